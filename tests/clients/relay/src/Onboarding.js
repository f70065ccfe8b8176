// A small Relay front end, compiled by relay-compiler in CI: the Onboarding Tool's list
// (usePaginationFragment over a @connection, both directions), a @refetchable patient
// fragment (refetched through Query.node) and the enable/send mutations.
import { graphql, useLazyLoadQuery, usePaginationFragment, useRefetchableFragment, useMutation } from 'react-relay';

export const onboardingQuery = graphql`
  query OnboardingQuery($count: Int!, $cursor: String, $filter: OnboardingFilter) {
    ...Onboarding_list @arguments(count: $count, cursor: $cursor, filter: $filter)
  }
`;

export const listFragment = graphql`
  fragment Onboarding_list on Query
  @refetchable(queryName: "OnboardingPaginationQuery")
  @argumentDefinitions(
    count: { type: "Int", defaultValue: 50 }
    cursor: { type: "String" }
    last: { type: "Int" }
    before: { type: "String" }
    filter: { type: "OnboardingFilter" }
  ) {
    onboarding(first: $count, after: $cursor, last: $last, before: $before, filter: $filter)
      @connection(key: "Onboarding_onboarding", filters: ["filter"]) {
      totalCount
      statusCounts { status count }
      edges {
        node {
          id
          ...Onboarding_patient
        }
      }
    }
  }
`;

export const patientFragment = graphql`
  fragment Onboarding_patient on Patient @refetchable(queryName: "OnboardingPatientRefetchQuery") {
    id
    chartNumber
    firstName
    lastName
    dateOfBirth
    email
    portalStatus
    emailSharedWith
    account { username locked }
    lastInvitation { id sentAt expiresAt deliveryStatus deliveryDetail }
  }
`;

export const enableMutation = graphql`
  mutation OnboardingEnableMutation($ids: [ID!]!) {
    enablePortal(input: { patientIds: $ids }) {
      results { requestedId patient { ...Onboarding_patient } userErrors { field code message } }
      userErrors { field code message }
    }
  }
`;

export const sendMutation = graphql`
  mutation OnboardingSendMutation($ids: [ID!]!) {
    sendInvitation(input: { patientIds: $ids }) {
      results { requestedId patient { ...Onboarding_patient } invitation { sentTo expiresAt } userErrors { code } }
      userErrors { code }
    }
  }
`;

export function OnboardingList({ queryRef }) {
  const { data, loadNext, loadPrevious, hasNext } = usePaginationFragment(listFragment, queryRef);
  const [commitEnable] = useMutation(enableMutation);
  const [commitSend] = useMutation(sendMutation);
  return { data, loadNext, loadPrevious, hasNext, commitEnable, commitSend };
}

export function PatientRow({ patientRef }) {
  const [patient, refetch] = useRefetchableFragment(patientFragment, patientRef);
  return { patient, refetch };
}

export function useOnboarding() {
  return useLazyLoadQuery(onboardingQuery, { count: 50 });
}
