//go:build integration

package cli

import (
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/apcera/deployhook/integration/clitest"
)

func shellQuote(s string) string { return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'" }

// onTerminal runs the binary under script(1), a real pseudo-terminal, with
// env added, and returns what the terminal showed.
func (e *env) onTerminal(t *testing.T, env []string, args ...string) string {
	t.Helper()
	if _, err := exec.LookPath("script"); err != nil {
		t.Skip("script(1) not installed (util-linux)")
	}
	line := shellQuote(e.Bin)
	for _, a := range args {
		line += " " + shellQuote(a)
	}
	tty := exec.Command("script", "-qfec", line, "/dev/null")
	tty.Env = append(append(os.Environ(), e.Vars...), env...)
	out, _ := tty.CombinedOutput()
	return string(out)
}

// One colour rule on a real terminal: colour and the progress bar by
// default; TERM=dumb gets neither; NO_COLOR and --no-color take the colour
// away.
func TestColourAndProgressOnTerminal(t *testing.T) {
	t.Parallel()
	e := newEnv(t, nil)
	bad := filepath.Join(e.Dir, "bad.conf")
	if err := os.WriteFile(bad, []byte("component: job_manager\ndb: { kind: store4 }\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name  string
		env   []string
		flag  bool
		color bool
	}{
		{"terminal", []string{"TERM=xterm"}, false, true},
		{"TERM=dumb", []string{"TERM=dumb"}, false, false},
		{"NO_COLOR", []string{"TERM=xterm", "NO_COLOR=1"}, false, false},
		{"--no-color", []string{"TERM=xterm"}, true, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			args := []string{"status", "-f", bad}
			if tc.flag {
				args = append(args, "--no-color")
			}
			out := e.onTerminal(t, append(tc.env, "NO_COLOR="+noColor(tc.env)), args...)
			if !strings.Contains(out, "store4") {
				t.Fatalf("no diagnostic shown:\n%s", out)
			}
			if got := strings.Contains(out, "\x1b["); got != tc.color {
				t.Errorf("ANSI escapes %t, want %t:\n%q", got, tc.color, out)
			}
		})
	}

	conf := e.conf(3000, clitest.Conf{})
	if out := e.onTerminal(t, []string{"TERM=dumb", "NO_COLOR="}, "migrate", "-f", conf); strings.Contains(out, "\x1b[") || strings.Contains(out, "records/s") ||
		!strings.Contains(out, "Migrated store2 -> store3") {
		t.Errorf("TERM=dumb: progress bar or escapes drawn:\n%q", out)
	}
}

// noColor is the NO_COLOR a case sets, "" when it sets none (the test's own
// environment must not leak in).
func noColor(env []string) string {
	for _, v := range env {
		if s, ok := strings.CutPrefix(v, "NO_COLOR="); ok {
			return s
		}
	}
	return ""
}

// The bash completion script completes commands and flags from the binary.
func TestBashCompletion(t *testing.T) {
	t.Parallel()
	if _, err := exec.LookPath("bash"); err != nil {
		t.Skip("no bash")
	}
	e := newEnv(t, nil)
	bin := filepath.Join(e.Dir, "bin")
	if err := os.MkdirAll(bin, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(e.Bin, filepath.Join(bin, "deployhook")); err != nil {
		t.Fatal(err)
	}
	script := e.MustRun(0, "completion", "bash").Stdout
	for _, tc := range []struct{ words, want string }{
		{"deployhook mi", "migrate"},
		{"deployhook migrate --dry", "--dry_run_store_migration"},
		{"deployhook wait --tim", "--timeout"},
	} {
		words := strings.Fields(tc.words)
		prog := script + "\nCOMP_WORDS=(" + strings.Join(words, " ") + "); COMP_CWORD=" + strconv.Itoa(len(words)-1) + "; _deployhook_complete; echo \"${COMPREPLY[@]}\"\n"
		cmd := exec.Command("bash", "-c", prog)
		cmd.Env = append(os.Environ(), "PATH="+bin+":"+os.Getenv("PATH"))
		out, err := cmd.CombinedOutput()
		if err != nil || strings.TrimSpace(string(out)) != tc.want {
			t.Errorf("%q completes to %q (%v), want %q", tc.words, out, err, tc.want)
		}
	}
}
