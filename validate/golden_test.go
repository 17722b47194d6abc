package validate

import (
	"bytes"
	"flag"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"

	"github.com/apcera/deployhook/migrate"
	"github.com/apcera/deployhook/validate/dconf"
	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"
	"github.com/hashicorp/hcl/v2"
)

var update = flag.Bool("update", false, "rewrite the golden files under fixtures/")

// leaks are secret values planted in the fixtures; no output may show them.
var leaks = []string{"hunter2", "hunter3", "s3cr3t", "0th3r-pw", "MIIE", "q2B9", "VaultToken", "pw-in-kind", "jm-secret", "do-not-show"}

// expected reads the fixture's "# expect: code..." first line.
func expected(t *testing.T, src []byte) []string {
	t.Helper()
	line, _, _ := bytes.Cut(src, []byte("\n"))
	rest, ok := bytes.CutPrefix(line, []byte("# expect:"))
	if !ok {
		t.Fatalf("fixture lacks a first line '# expect: code...'")
	}
	codes := strings.Fields(string(rest))
	sort.Strings(codes)
	return codes
}

func codes(diags hcl.Diagnostics) []string {
	seen := map[string]bool{}
	var out []string
	for _, d := range diags {
		if c := dconf.CodeOf(d); !seen[c] {
			seen[c] = true
			out = append(out, c)
		}
	}
	sort.Strings(out)
	return out
}

func golden(t *testing.T, path string, got []byte) {
	t.Helper()
	if *update {
		if err := os.WriteFile(path, got, 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (run go test ./validate/ -update to create it)", err)
	}
	if diff := cmp.Diff(string(want), string(got)); diff != "" {
		t.Errorf("%s mismatch (-want +got):\n%s", path, diff)
	}
}

func checkFixture(t *testing.T, path string, src []byte, f *dconf.File, diags hcl.Diagnostics, json bool) {
	t.Helper()
	base := strings.TrimSuffix(path, ".conf")
	name := filepath.Base(path)
	if diff := cmp.Diff(expected(t, src), codes(diags), cmpopts.EquateEmpty()); diff != "" {
		t.Errorf("codes (-want +got):\n%s", diff)
	}
	invalid := strings.HasPrefix(name, "invalid-")
	if diags.HasErrors() != invalid {
		t.Errorf("HasErrors = %v, want %v", diags.HasErrors(), invalid)
	}
	for _, d := range diags {
		if d.Subject != nil && d.Subject.Filename != name {
			t.Errorf("subject file %q, want %q", d.Subject.Filename, name)
		}
	}
	p := NewPrinter(false)
	p.Add(name, src, f)
	var text, js bytes.Buffer
	if err := p.WriteText(&text, diags); err != nil {
		t.Fatal(err)
	}
	golden(t, base+".text.golden", text.Bytes())
	outs := [][]byte{text.Bytes()}
	if json {
		if err := WriteJSON(&js, diags); err != nil {
			t.Fatal(err)
		}
		golden(t, base+".json.golden", js.Bytes())
		outs = append(outs, js.Bytes())
	}
	for _, out := range outs {
		for _, s := range leaks {
			if bytes.Contains(out, []byte(s)) {
				t.Errorf("output shows the secret %q:\n%s", s, out)
			}
		}
	}
}

func fixtures(t *testing.T, dir string) []string {
	t.Helper()
	paths, err := filepath.Glob(filepath.Join("..", "fixtures", dir, "*.conf"))
	if err != nil || len(paths) == 0 {
		t.Fatalf("no fixtures in %s: %v", dir, err)
	}
	return paths
}

func TestClusterFixtures(t *testing.T) {
	for _, path := range fixtures(t, "validate") {
		t.Run(filepath.Base(path), func(t *testing.T) {
			src, err := os.ReadFile(path)
			if err != nil {
				t.Fatal(err)
			}
			c, diags := ClusterConf(src, filepath.Base(path))
			checkFixture(t, path, src, c.File, diags, true)
		})
	}
}

func TestComponentFixtures(t *testing.T) {
	for _, path := range fixtures(t, "component") {
		t.Run(filepath.Base(path), func(t *testing.T) {
			src, err := os.ReadFile(path)
			if err != nil {
				t.Fatal(err)
			}
			_, diags := LoadComponent(src, filepath.Base(path))
			f, _ := dconf.Parse(src, filepath.Base(path))
			checkFixture(t, path, src, f, diags, false)
		})
	}
}

// TestSyntaxFixtures renders the parser's own diagnostics for the Dconf
// fixtures (syntax only: these are not all cluster.confs), so that what an
// operator reads for each syntax error is pinned as well as its code and
// position (validate/dconf's tests).
func TestSyntaxFixtures(t *testing.T) {
	for _, path := range fixtures(t, "dconf") {
		t.Run(filepath.Base(path), func(t *testing.T) {
			src, err := os.ReadFile(path)
			if err != nil {
				t.Fatal(err)
			}
			name := filepath.Base(path)
			f, diags := dconf.Parse(src, name)
			if invalid := strings.HasPrefix(name, "invalid-"); diags.HasErrors() != invalid {
				t.Errorf("HasErrors = %v, want %v", diags.HasErrors(), invalid)
			}
			p := NewPrinter(false)
			p.Add(name, src, f)
			var text bytes.Buffer
			if err := p.WriteText(&text, diags); err != nil {
				t.Fatal(err)
			}
			golden(t, strings.TrimSuffix(path, ".conf")+".text.golden", text.Bytes())
		})
	}
}

// TestRunbookSettings checks what the rules read from the runbook snippet.
func TestRunbookSettings(t *testing.T) {
	src, err := os.ReadFile("../fixtures/validate/valid-runbook.conf")
	if err != nil {
		t.Fatal(err)
	}
	c, diags := ClusterConf(src, "cluster.conf")
	if len(diags) != 0 {
		t.Fatalf("diagnostics: %v", diags)
	}
	if c.Kind != migrate.KindStore3 || !c.Migrate || c.Settings == nil {
		t.Errorf("got kind %q migrate %v settings %v, want store3 true set", c.Kind, c.Migrate, c.Settings != nil)
	}
}
