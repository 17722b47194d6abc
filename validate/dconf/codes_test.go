package dconf

import (
	"os"
	"regexp"
	"testing"
)

// TestCodesDocumented keeps the code list in codes.go, which docs cite, in
// step with the codes the parser uses.
func TestCodesDocumented(t *testing.T) {
	src, err := os.ReadFile("codes.go")
	if err != nil {
		t.Fatal(err)
	}
	documented := map[string]bool{}
	for _, m := range regexp.MustCompile(`(?m)^//\t([a-z0-9-]+) `).FindAllSubmatch(src, -1) {
		documented[string(m[1])] = true
	}
	consts := regexp.MustCompile(`(?m)^\tcode\w+\s+= "([a-z0-9-]+)"`).FindAllSubmatch(src, -1)
	if len(consts) < 20 {
		t.Fatalf("found only %d code constants", len(consts))
	}
	for _, m := range consts {
		if !documented[string(m[1])] {
			t.Errorf("code %q is not in the doc comment", m[1])
		}
		delete(documented, string(m[1]))
	}
	for c := range documented {
		t.Errorf("documented code %q is not defined", c)
	}
}
