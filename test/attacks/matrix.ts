// The attack matrix (issues #8, #12, #14 and #15), in the order docs/security.md lists it.
import { adminSocket } from './admin.js';
import { dhcpForeignChaddr, dhcpStarvation } from './dhcp.js';
import {
  arpPayloadFromForeign,
  declineFromForeign,
  endpointStaysLocal,
  rogueDhcpServer,
  rogueMetadata,
} from './edges.js';
import { garpForeignIp, ipSpoof, macSpoof } from './guard.js';
import { guardTableDeleted } from './guard-restore.js';
import { hostServices } from './host.js';
import { malformedHttp, requestFlood } from './http.js';
import { guestMacFromForeignPort, macMoved, metadataUnknownPort } from './identity.js';
import { ipReusedAfterDelete, overlappingSubnets } from './lifecycle.js';
import {
  denyBySpelling,
  denyEveryTree,
  dnsRebinding,
  etagOnDenied,
  eventAckForeign,
  identityTokenForged,
  tokenlessPost,
  tokenOtherInstance,
  waitOnDenied,
  xffOnTokenPut,
  xffOnWrite,
} from './metadata.js';
import type { AttackFn } from './result.js';
import { connectionOutlivesRule, spoofedRoleSource } from './secgroups.js';
import { uplinkClaimsGuest, uplinkStaysOutOfServices } from './uplink.js';

export const MATRIX: readonly AttackFn[] = [
  macSpoof,
  ipSpoof,
  garpForeignIp,
  dhcpForeignChaddr,
  dhcpStarvation,
  metadataUnknownPort,
  macMoved,
  guestMacFromForeignPort,
  tokenOtherInstance,
  xffOnTokenPut,
  xffOnWrite,
  tokenlessPost,
  dnsRebinding,
  denyEveryTree,
  ipReusedAfterDelete,
  overlappingSubnets,
  malformedHttp,
  requestFlood,
  hostServices,
  arpPayloadFromForeign,
  rogueMetadata,
  rogueDhcpServer,
  declineFromForeign,
  endpointStaysLocal,
  guardTableDeleted,
  adminSocket,
  uplinkStaysOutOfServices,
  uplinkClaimsGuest,
  spoofedRoleSource,
  connectionOutlivesRule,
  denyBySpelling,
  etagOnDenied,
  identityTokenForged,
  eventAckForeign,
  waitOnDenied,
];
