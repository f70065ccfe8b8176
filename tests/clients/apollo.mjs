// Apollo Client pages through the practice with relayStylePagination (fetchMore until
// hasNextPage is false), then reads the merged list from its normalised cache: every
// patient must be there exactly once. Prints one JSON line.
import { readFileSync } from 'node:fs';
import { ApolloClient, HttpLink, InMemoryCache, gql } from '@apollo/client/core/index.js';
import { relayStylePagination } from '@apollo/client/utilities/index.js';

const ONBOARDING = gql(readFileSync(new URL('./operations/Onboarding.graphql', import.meta.url), 'utf8'));
const pageSize = Number(process.env.PAGE_SIZE || 25);
const client = new ApolloClient({
  link: new HttpLink({
    uri: process.env.PORTAL_URL + '/graphql',
    headers: { Authorization: `Bearer ${process.env.PORTAL_STAFF_TOKEN}` },
  }),
  cache: new InMemoryCache({
    typePolicies: { Query: { fields: { onboarding: relayStylePagination(['filter']) } } },
  }),
});

const list = client.watchQuery({ query: ONBOARDING, variables: { first: pageSize } });
let data = (await list.result()).data;
let pages = 1;
while (data.onboarding.pageInfo.hasNextPage) {
  // relayStylePagination merges each page into the one cached list
  await list.fetchMore({ variables: { first: pageSize, after: data.onboarding.pageInfo.endCursor } });
  data = list.getCurrentResult().data;
  pages += 1;
  if (pages > 1000) throw new Error('paging never ended');
}
const merged = client.readQuery({ query: ONBOARDING, variables: { first: pageSize } });
const ids = merged.onboarding.edges.map((e) => e.node.id);
console.log(JSON.stringify({
  pages,
  edges: ids.length,
  unique: new Set(ids).size,
  totalCount: merged.onboarding.totalCount,
  ids,
}));
