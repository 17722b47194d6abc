package migrate

import "unsafe"

// unsafeString turns b into a string without copying; b must never be
// written again.
func unsafeString(b []byte) string {
	if len(b) == 0 {
		return ""
	}
	return unsafe.String(&b[0], len(b))
}
