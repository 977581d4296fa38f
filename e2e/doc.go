// Package e2e holds end-to-end tests of fleetplan as a person meets it on
// the dev cluster: the integration tests (build tag `integration`) apply a
// rollout with the real binary and look at the result in the tools an
// operator uses, such as the Consul UI in headless Chromium.
package e2e
