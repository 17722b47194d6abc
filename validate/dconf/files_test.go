package dconf

import (
	"bufio"
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

var fixtureDir = filepath.Join("..", "..", "fixtures", "dconf")

// TestFixtures parses the project's own fixtures: valid-* without any
// diagnostic, invalid-* with exactly the errors listed here.
func TestFixtures(t *testing.T) {
	wantErrs := map[string][]string{
		"invalid-four-errors.conf": {
			"expected-newline@3:17", "expected-newline@7:12", "curly-quote@11:13", "int-overflow@13:13",
		},
		"invalid-truncated.conf": {"unterminated-map@3:27"},
		"invalid-erb.conf":       {"erb-template@2:9"},
		"invalid-block.conf":     {"unterminated-block@2:8"},
	}
	files, err := filepath.Glob(filepath.Join(fixtureDir, "*.conf"))
	if err != nil || len(files) == 0 {
		t.Fatalf("no fixtures in %s: %v", fixtureDir, err)
	}
	seen := 0
	for _, path := range files {
		name := filepath.Base(path)
		t.Run(name, func(t *testing.T) {
			src, err := os.ReadFile(path)
			if err != nil {
				t.Fatal(err)
			}
			f, diags := Parse(src, name)
			checkInvariants(t, src, f, diags)
			errs, warns := diagList(diags)
			switch {
			case strings.HasPrefix(name, "valid-"):
				if len(errs)+len(warns) != 0 {
					t.Errorf("valid fixture has diagnostics: %v", diags)
				}
			case strings.HasPrefix(name, "invalid-"):
				want, ok := wantErrs[name]
				if !ok {
					t.Fatalf("no expected errors listed for %s", name)
				}
				seen++
				if diff := cmp.Diff(want, errs); diff != "" {
					t.Errorf("errors (-want +got):\n%s\n%v", diff, diags)
				}
			default:
				t.Errorf("fixture names start with valid- or invalid-")
			}
		})
	}
	if seen != len(wantErrs) {
		t.Errorf("checked %d invalid fixtures, expected %d", seen, len(wantErrs))
	}
}

func TestFixtureValues(t *testing.T) {
	src, err := os.ReadFile(filepath.Join(fixtureDir, "valid-cluster.conf"))
	if err != nil {
		t.Fatal(err)
	}
	f, _ := Parse(src, "valid-cluster.conf")
	cd := f.Root.Path("chef", "continuum", "component_database")
	if cd == nil {
		t.Fatal("no chef.continuum.component_database")
	}
	if diff := cmp.Diff(M{{"migrate_store2_to_store3", true}, {"dry_run", false}}, plain(cd.Value)); diff != "" {
		t.Errorf("component_database (-want +got):\n%s", diff)
	}
	hosts := f.Root.Path("machines", "central", "hosts")
	if diff := cmp.Diff([]any{"10.0.1.10", "10.0.2.10"}, plain(hosts.Value)); diff != "" {
		t.Errorf("hosts (-want +got):\n%s", diff)
	}
	if q := hosts.Value.Elems[0].Quote; q != Single {
		t.Errorf("hosts[0] quote = %q, want single", q)
	}
	th := f.Root.Path("chef", "continuum", "router", "ssl", "tlshosts").Value.Elems[0]
	key := th.Lookup("private_key").Value
	want := "\n-----BEGIN EC PRIVATE KEY-----\nbm90IGEgcmVhbCBrZXksIGp1c3QgdGVzdCBkYXRh\n-----END EC PRIVATE KEY-----\n"
	if key.Kind != BlockString || key.Str != want {
		t.Errorf("private_key = %v %q", key.Kind, key.Str)
	}
	if got := string(src[key.Range.Start.Byte:key.Range.End.Byte]); got != "("+want+")" {
		t.Errorf("block range covers %q", got)
	}
}

// corpusDir is the shared example corpus, outside the repository on purpose:
// it is read in place, never copied.
var corpusDir = filepath.Join("..", "..", "..", "shared", "dconf-examples")

// TestCorpus parses every file INDEX.md lists, and expects what its
// "expect" column says.
func TestCorpus(t *testing.T) {
	index, err := os.ReadFile(filepath.Join(corpusDir, "INDEX.md"))
	if err != nil {
		t.Skipf("corpus not available at %s: %v", corpusDir, err)
	}
	expect := corpusExpectations(index)
	if len(expect) < 20 {
		t.Fatalf("read only %d rows from INDEX.md", len(expect))
	}
	for name, valid := range expect {
		t.Run(name, func(t *testing.T) {
			src, err := os.ReadFile(filepath.Join(corpusDir, name))
			if err != nil {
				t.Fatal(err)
			}
			f, diags := Parse(src, name)
			checkInvariants(t, src, f, diags)
			if valid && diags.HasErrors() {
				t.Errorf("valid file has errors: %v", diags)
			}
			if !valid && !diags.HasErrors() {
				t.Errorf("invalid file parsed without errors")
			}
			if valid && len(f.Root.Entries) == 0 {
				t.Errorf("valid file has no entries")
			}
		})
	}
}

// corpusExpectations reads the table rows of INDEX.md: file name in the
// first column, "valid" or "invalid" in the column headed "expect".
func corpusExpectations(index []byte) map[string]bool {
	out := map[string]bool{}
	col := -1
	sc := bufio.NewScanner(bytes.NewReader(index))
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		if !strings.HasPrefix(line, "|") {
			col = -1
			continue
		}
		cells := strings.Split(strings.Trim(line, "|"), "|")
		for i := range cells {
			cells[i] = strings.TrimSpace(cells[i])
		}
		if col < 0 {
			for i, c := range cells {
				if c == "expect" {
					col = i
				}
			}
			continue
		}
		if col >= len(cells) || !strings.HasSuffix(cells[0], ".conf") {
			continue
		}
		e := strings.Trim(cells[col], "* ")
		switch {
		case strings.HasPrefix(e, "valid"):
			out[cells[0]] = true
		case strings.HasPrefix(e, "invalid"):
			out[cells[0]] = false
		}
	}
	return out
}
