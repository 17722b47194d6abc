//go:build !linux

package main

// allocate returns an empty buffer of capacity n.
func allocate(n int) []byte { return make([]byte, 0, n) }
