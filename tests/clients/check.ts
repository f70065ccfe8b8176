// Compiled with tsc --strict against the generated types: a front end's use of them.
import type { OnboardingQuery, PatientNodeQuery, SendInvitationMutation } from './generated/graphql';

export function rows(data: OnboardingQuery): string[] {
  return data.onboarding.edges.map((edge) => {
    const p = edge.node;
    const sent: string | undefined = p.lastInvitation?.sentAt;
    const born: string = p.dateOfBirth;
    return `${p.lastName}, ${p.firstName} (${p.portalStatus}) ${born} ${sent ?? 'never invited'}`;
  });
}

export function failedDeliveries(data: PatientNodeQuery): string[] {
  const node = data.node;
  if (node?.__typename !== 'Patient') return [];
  return node.invitations.edges
    .filter((e) => e.node.deliveryStatus === 'FAILED')
    .map((e) => e.node.deliveryDetail ?? '');
}

export function sentTo(data: SendInvitationMutation): string[] {
  return data.sendInvitation.results.flatMap((r) => (r.invitation ? [r.invitation.sentTo] : []));
}
