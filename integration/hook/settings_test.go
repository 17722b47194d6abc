//go:build integration

package hook

import (
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/apcera/deployhook/integration/harness"
)

// settingsRow is one row of fixtures/cookbook/settings.json. A key absent
// from the row is unset; present, its JSON value is written as it is.
type settingsRow struct {
	Name    string `json:"name"`
	Verdict string `json:"verdict"`
	values  map[string]json.RawMessage
}

func loadSettingsTable(t *testing.T, root string) []settingsRow {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(root, "fixtures", "cookbook", "settings.json"))
	if err != nil {
		t.Fatal(err)
	}
	var table struct {
		Rows []map[string]json.RawMessage `json:"rows"`
	}
	if err := json.Unmarshal(b, &table); err != nil {
		t.Fatal(err)
	}
	var rows []settingsRow
	for _, raw := range table.Rows {
		var r settingsRow
		if err := json.Unmarshal(raw["name"], &r.Name); err != nil {
			t.Fatal(err)
		}
		if err := json.Unmarshal(raw["verdict"], &r.Verdict); err != nil || (r.Verdict != "ok" && r.Verdict != "refused") {
			t.Fatalf("row %q: verdict %s, want \"ok\" or \"refused\"", r.Name, raw["verdict"])
		}
		r.values = raw
		rows = append(rows, r)
	}
	return rows
}

// dconfValue writes a JSON scalar as the Dconf value the cookbook would
// render for it: a string quoted, a number or boolean bare; ok is false for
// unset (absent or null).
func (r settingsRow) dconfValue(t *testing.T, key string) (string, bool) {
	t.Helper()
	raw, ok := r.values[key]
	if !ok || string(raw) == "null" {
		return "", false
	}
	var v any
	if err := json.Unmarshal(raw, &v); err != nil {
		t.Fatal(err)
	}
	switch v := v.(type) {
	case string:
		return `"` + strings.NewReplacer(`\`, `\\`, `"`, `\"`).Replace(v) + `"`, true
	case float64, bool:
		return string(raw), true
	}
	t.Fatalf("row %q: %s is %s, want a scalar", r.Name, key, raw)
	return "", false
}

// componentConf is the component conf of a row, for the Go binary.
func (r settingsRow) componentConf(t *testing.T, consulAddr, logDir string) string {
	var b strings.Builder
	b.WriteString("component: job_manager\ndb: {\n")
	if v, ok := r.dconfValue(t, "kind"); ok {
		fmt.Fprintf(&b, "  kind: %s\n", v)
	}
	if v, ok := r.dconfValue(t, "migrate"); ok {
		fmt.Fprintf(&b, "  migrate_store2_to_store3: %s\n", v)
	}
	if v, ok := r.dconfValue(t, "table"); ok {
		fmt.Fprintf(&b, "  postgres: { table: %s }\n", v)
	}
	fmt.Fprintf(&b, "  consul: {\n    address: %q\n", consulAddr)
	if v, ok := r.dconfValue(t, "prefix"); ok {
		fmt.Fprintf(&b, "    prefix: %s\n", v)
	}
	fmt.Fprintf(&b, "  }\n}\nlog_dir: %q\n", logDir)
	return b.String()
}

// The cookbook's Ruby setting checks and the deployhook binary give the
// same verdict on every row of the settings table, and it is the row's.
// Ruby: the recipe compiled with the row as node attributes
// (cookbook/spec/settings_verdicts.rb). Go: `deployhook status -f` of the
// row's component conf, which loads and checks it (exit 3 refuses) before
// it reads store3.
func TestSettingsParity(t *testing.T) {
	e := newEnv(t)
	root, err := harness.RepoRoot()
	if err != nil {
		t.Fatal(err)
	}
	rows := loadSettingsTable(t, root)
	if len(rows) < 10 {
		t.Fatalf("settings table has %d rows", len(rows))
	}

	cmd := exec.Command("ruby", filepath.Join(root, "cookbook", "spec", "settings_verdicts.rb"),
		filepath.Join(root, "fixtures", "cookbook", "settings.json"))
	var out, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &stderr
	if err := cmd.Run(); err != nil {
		t.Fatalf("settings_verdicts.rb: %v\n%s", err, stderr.Bytes())
	}
	var ruby []struct{ Name, Verdict, Message string }
	if err := json.Unmarshal(out.Bytes(), &ruby); err != nil {
		t.Fatalf("settings_verdicts.rb output: %v\n%s", err, out.Bytes())
	}
	if len(ruby) != len(rows) {
		t.Fatalf("ruby gave %d verdicts for %d rows", len(ruby), len(rows))
	}

	for i, row := range rows {
		t.Run(row.Name, func(t *testing.T) {
			conf := row.componentConf(t, consul.Addr(), filepath.Join(e.Dir, "log", "jm"))
			path := filepath.Join(e.Dir, fmt.Sprintf("row%d.conf", i))
			if err := os.WriteFile(path, []byte(conf), 0o640); err != nil {
				t.Fatal(err)
			}
			res := e.Run("status", "-f", path)
			var goVerdict string
			switch res.Code {
			case 0:
				goVerdict = "ok"
			case 3:
				goVerdict = "refused"
			default:
				t.Fatalf("status exit %d, want 0 or 3:\n%s\n%s", res.Code, conf, res)
			}
			rb := ruby[i]
			if rb.Name != row.Name {
				t.Fatalf("ruby verdict %d is for %q", i, rb.Name)
			}
			if rb.Verdict != goVerdict || goVerdict != row.Verdict {
				t.Errorf("verdicts differ: table %s, ruby %s (%s), deployhook %s\nconf:\n%s%s",
					row.Verdict, rb.Verdict, rb.Message, goVerdict, conf, res.Stderr)
			}
		})
	}
}
