//go:build integration

package hook

import (
	"bytes"
	"encoding/json"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/apcera/deployhook/integration/clitest"
	"github.com/apcera/deployhook/integration/harness"
	"github.com/apcera/deployhook/migrate"
)

// rendered is render.rb's output (cookbook/README.md, "render.rb contract").
type rendered struct {
	Files       map[string]string  `json:"files"`
	Commands    []string           `json:"commands"`
	Environment map[string]string  `json:"environment"`
	Directories []string           `json:"directories"`
	Stamps      map[string]*string `json:"stamps"`
	Steps       []struct {
		Type       string         `json:"type"`
		Name       string         `json:"name"`
		Action     string         `json:"action"`
		Properties map[string]any `json:"properties"`
		Guards     []struct {
			NotIf  string `json:"not_if"`
			OnlyIf string `json:"only_if"`
		} `json:"guards"`
	} `json:"steps"`
	Error string `json:"error"`
}

// render runs `ruby cookbook/spec/render.rb ATTRS.json` and returns its exit
// code and output.
func render(t *testing.T, dir string, attrs any) (int, rendered, string) {
	t.Helper()
	root, err := harness.RepoRoot()
	if err != nil {
		t.Fatal(err)
	}
	b, err := json.Marshal(attrs)
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(dir, "attrs.json")
	if err := os.WriteFile(path, b, 0o644); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command("ruby", filepath.Join(root, "cookbook", "spec", "render.rb"), path)
	var out, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &stderr
	err = cmd.Run()
	code := 0
	var ee *exec.ExitError
	switch {
	case errors.As(err, &ee):
		code = ee.ExitCode()
	case err != nil:
		t.Fatalf("ruby render.rb: %v", err)
	}
	var r rendered
	if err := json.Unmarshal(out.Bytes(), &r); err != nil {
		t.Fatalf("render.rb (exit %d) output is not JSON: %v\n%s\nstderr: %s", code, err, out.Bytes(), stderr.Bytes())
	}
	return code, r, stderr.String()
}

// converge replays the steps as Chef would: guards first (a not_if that
// exits 0 skips the step), then the resource. It returns the commands it
// executed, and stops at the first that fails, as a failed execute ends a
// converge.
func converge(t *testing.T, r rendered) []string {
	t.Helper()
	var ran []string
	for _, s := range r.Steps {
		skip := false
		for _, g := range s.Guards {
			if g.NotIf != "" && exec.Command("/bin/sh", "-c", g.NotIf).Run() == nil {
				skip = true
			}
			if g.OnlyIf != "" && exec.Command("/bin/sh", "-c", g.OnlyIf).Run() != nil {
				skip = true
			}
		}
		if skip {
			continue
		}
		switch s.Type {
		case "directory":
			if err := os.MkdirAll(s.Name, 0o755); err != nil {
				t.Fatal(err)
			}
		case "template":
			content, ok := r.Files[s.Name]
			if !ok {
				t.Fatalf("template %s is not in files", s.Name)
			}
			if err := os.WriteFile(s.Name, []byte(content), 0o640); err != nil {
				t.Fatal(err)
			}
		case "execute":
			command, _ := s.Properties["command"].(string)
			cmd := exec.Command("/bin/sh", "-c", command)
			cmd.Env = os.Environ()
			if env, ok := s.Properties["environment"].(map[string]any); ok {
				for k, v := range env {
					cmd.Env = append(cmd.Env, k+"="+v.(string))
				}
			}
			start := time.Now()
			out, err := cmd.CombinedOutput()
			if strings.Contains(command, " run -f ") {
				recordLatency(time.Since(start))
			}
			ran = append(ran, command)
			if err != nil {
				t.Fatalf("%s: %q: %v\n%s", s.Name, command, err, out)
			}
		case "file":
			if s.Action == "delete" {
				if err := os.Remove(s.Name); err != nil && !os.IsNotExist(err) {
					t.Fatal(err)
				}
				continue
			}
			content, _ := s.Properties["content"].(string)
			if err := os.WriteFile(s.Name, []byte(content), 0o644); err != nil {
				t.Fatal(err)
			}
		default:
			t.Fatalf("unknown step type %q", s.Type)
		}
	}
	return ran
}

func cookbookAttrs(e *env, kind string, migrate bool, comps map[string]names) map[string]any {
	dh := map[string]any{
		"components": components,
		"binary":     e.Bin,
		"conf_dir":   filepath.Join(e.Dir, "etc"),
		"state_dir":  filepath.Join(e.Dir, "state"),
		"pgpassfile": pg.PassFile(),
		"hostname":   "central-1",
	}
	for c, n := range comps {
		logDir := filepath.Join(e.Dir, "log", c)
		e.watch(logDir)
		dh[c] = map[string]any{
			"postgres": map[string]any{"url": pg.URLWithoutPassword(n.DB)},
			"consul":   map[string]any{"address": consul.Addr(), "prefix": n.Prefix},
			"log_dir":  logDir,
		}
	}
	return map[string]any{
		"continuum": map[string]any{"component_database": map[string]any{
			"kind": kind, "migrate_store2_to_store3": migrate}},
		"deployhook": dh,
	}
}

// The exact commands the cookbook renders for a store3 + migrate node with
// the three components migrate them all; a second converge runs nothing.
func TestCookbookConverge(t *testing.T) {
	e := newEnv(t)
	comps := map[string]names{}
	data := map[string][]migrate.Record{}
	for i, c := range components {
		comps[c] = e.names(c)
		data[c] = clitest.Records(1500 + 500*i)
		e.SeedDB(comps[c].DB, data[c])
	}
	code, r, stderr := render(t, e.Dir, cookbookAttrs(e, "store3", true, comps))
	if code != 0 {
		t.Fatalf("render.rb exit %d: %s %s", code, r.Error, stderr)
	}
	if len(r.Commands) != 6 {
		t.Fatalf("want 3 run and 3 wait commands, got %q", r.Commands)
	}
	if r.Environment["PGPASSFILE"] != pg.PassFile() {
		t.Errorf("environment %v lacks PGPASSFILE=%s", r.Environment, pg.PassFile())
	}
	var stepDirs, stepExecs []string
	stepStamps := map[string]bool{}
	for _, s := range r.Steps {
		switch s.Type {
		case "directory":
			stepDirs = append(stepDirs, s.Name)
		case "execute":
			stepExecs = append(stepExecs, s.Properties["command"].(string))
		case "file":
			stepStamps[s.Name] = true
		}
	}
	if !slices.Equal(stepDirs, r.Directories) || !slices.Equal(stepExecs, r.Commands) || len(stepStamps) != len(r.Stamps) {
		t.Errorf("steps disagree with directories/commands/stamps:\nsteps: %q %q %v\nout:   %q %q %v",
			stepDirs, stepExecs, stepStamps, r.Directories, r.Commands, r.Stamps)
	}
	// Each rendered conf is one the Go CLI loads as it is.
	for path, content := range r.Files {
		dir := filepath.Join(e.Dir, "confcheck")
		if err := os.MkdirAll(dir, 0o755); err != nil {
			t.Fatal(err)
		}
		p := filepath.Join(dir, filepath.Base(path))
		if err := os.WriteFile(p, []byte(content), 0o640); err != nil {
			t.Fatal(err)
		}
		if res := e.Run("status", "-f", p); res.Code != 0 {
			t.Errorf("the rendered %s does not load in deployhook:\n%s\n%s", path, content, res)
		}
	}

	ran := converge(t, r)
	if !slices.Equal(ran, r.Commands) {
		t.Errorf("first converge ran %q, want the rendered commands %q", ran, r.Commands)
	}
	for _, c := range components {
		e.AssertMigrated(comps[c].Prefix, data[c])
	}
	for path, want := range r.Stamps {
		b, err := os.ReadFile(path)
		switch {
		case want == nil && !os.IsNotExist(err):
			t.Errorf("stamp %s should be deleted (err %v)", path, err)
		case want != nil && string(b) != *want:
			t.Errorf("stamp %s = %q, want %q (err %v)", path, b, *want, err)
		}
	}

	if ran := converge(t, r); len(ran) != 0 {
		t.Errorf("second converge ran %q, want nothing", ran)
	}
	for _, c := range components {
		waitWorkerExit(t, filepath.Join(e.Dir, "log", c))
	}
}

// The cookbook refuses store2 + migrate before declaring anything: render.rb
// exits 3 and there is nothing to run.
func TestCookbookRefusesStore2Migrate(t *testing.T) {
	e := newEnv(t)
	comps := map[string]names{}
	for _, c := range components {
		comps[c] = e.names(c)
	}
	code, r, stderr := render(t, e.Dir, cookbookAttrs(e, "store2", true, comps))
	if code != 3 {
		t.Fatalf("render.rb exit %d, want 3: %+v %s", code, r, stderr)
	}
	if !strings.Contains(r.Error, "migrate_store2_to_store3") || len(r.Commands) != 0 || len(r.Files) != 0 || len(r.Steps) != 0 {
		t.Errorf("refusal: %+v", r)
	}
	if ran := converge(t, r); len(ran) != 0 {
		t.Errorf("ran %q", ran)
	}
	for _, p := range []string{"etc", "state", "log"} {
		if _, err := os.Stat(filepath.Join(e.Dir, p)); !os.IsNotExist(err) {
			t.Errorf("%s exists after a refused render (stat: %v)", p, err)
		}
	}
}
