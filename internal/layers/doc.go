// Package layers holds the layering test (layers_test.go): which weir
// packages each weir package may import, written down once, and which
// packages a program that imports only the root package must not link.
// Imports point down, as docs/architecture.md (Import directions)
// describes: the API (root) → plan → runtime → the protocol state
// machines, state and storage → checkpoint. The data plane's protocol
// (runtime/network) sits beside the runtime; its TCP and TLS transport
// (runtime/network/tcp) is for the cluster roles only. Nothing below the
// API imports it; connectors, job flags, commands and examples sit on top.
package layers
