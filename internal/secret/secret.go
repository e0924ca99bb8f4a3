// Package secret compares the cluster token the control and data planes
// check.
package secret

import (
	"crypto/sha256"
	"crypto/subtle"
)

// Equal compares offered with want in constant time, also with respect to
// their lengths (it compares their SHA-256 hashes).
func Equal(offered, want string) bool {
	a, b := sha256.Sum256([]byte(offered)), sha256.Sum256([]byte(want))
	return subtle.ConstantTimeCompare(a[:], b[:]) == 1
}
