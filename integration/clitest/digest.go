package clitest

import (
	"crypto/sha256"
	"fmt"
	"math/big"
	"strconv"

	"github.com/apcera/deployhook/migrate"
)

// Digest is DESIGN.md's digest of a migration, written again here so that
// the tests do not trust the code they test: "sha256:" and 64 hex digits of
// the sum modulo 2^256 of SHA-256(escaped key relative to the prefix (see
// ExpectedKey), NUL, version in decimal, NUL, data) over records. The sum
// does not depend on the order of records.
func Digest(records []migrate.Record) string {
	sum := new(big.Int)
	mod := new(big.Int).Lsh(big.NewInt(1), 256)
	for _, r := range records {
		h := sha256.New()
		h.Write([]byte(ExpectedKey("", r.Bucket, r.Key)))
		h.Write([]byte{0})
		h.Write([]byte(strconv.FormatInt(r.Version, 10)))
		h.Write([]byte{0})
		h.Write(r.Data)
		sum.Add(sum, new(big.Int).SetBytes(h.Sum(nil)))
		sum.Mod(sum, mod)
	}
	return fmt.Sprintf("sha256:%064x", sum)
}
