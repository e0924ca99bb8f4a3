// Package layers holds the layering test (layers_test.go): which weir
// packages each weir package may import, written down once. Imports point
// down the layers of docs/architecture.md: the API (root) → plan → runtime
// → the protocol state machines, state and storage → checkpoint. Nothing
// below the API imports it; connectors, job flags, commands and examples
// sit on top.
package layers
