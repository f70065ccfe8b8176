// The development GraphiQL page (graph/static/graphiql.html). An external file, not an
// inline script, so the page's Content-Security-Policy can say script-src 'self'.
(function () {
  "use strict";

  // GraphiQL keeps its editors, tabs and history in this storage. Request headers carry
  // the staff token, so they never reach localStorage: not the "headers" entry, and not
  // the copies inside the tab state or the history ("queries", "favorites"), whatever the
  // "persist headers" setting says. Everything else persists as usual.
  function withoutHeaders(key, value) {
    if (/(^|:)headers$/.test(key)) {
      return null;
    }
    try {
      return JSON.stringify(JSON.parse(value), function (name, item) {
        return name === "headers" ? null : item;
      });
    } catch (notJson) {
      return value;
    }
  }

  var PREFIX = "graphiql:";
  var storage = {
    getItem: function (key) {
      return window.localStorage.getItem(key);
    },
    setItem: function (key, value) {
      var kept = withoutHeaders(key, String(value));
      if (kept === null) {
        window.localStorage.removeItem(key);
      } else {
        window.localStorage.setItem(key, kept);
      }
    },
    removeItem: function (key) {
      window.localStorage.removeItem(key);
    },
    clear: function () {
      Object.keys(window.localStorage).forEach(function (key) {
        if (key.indexOf(PREFIX) === 0) {
          window.localStorage.removeItem(key);
        }
      });
    },
    get length() {
      return Object.keys(window.localStorage).filter(function (key) {
        return key.indexOf(PREFIX) === 0;
      }).length;
    },
  };

  var endpoint = window.location.href.split(/[?#]/)[0];
  var fetcher = GraphiQL.createFetcher({ url: endpoint });

  var root = ReactDOM.createRoot(document.getElementById("graphiql"));
  root.render(
    React.createElement(GraphiQL, {
      fetcher: fetcher,
      storage: storage,
      shouldPersistHeaders: false,
      isHeadersEditorEnabled: true,
      defaultEditorToolsVisibility: true,
      inputValueDeprecation: true,
    })
  );
})();
