package main

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/urfave/cli/v2"
	"golang.org/x/sys/unix"
)

// runCLI runs the command line in process and returns its exit code and
// streams.
func runCLI(t *testing.T, args ...string) (int, string, string) {
	t.Helper()
	var out, errb bytes.Buffer
	code := runMain(append([]string{"deployhook"}, args...), strings.NewReader(""), &out, &errb)
	return code, out.String(), errb.String()
}

// Usage errors exit 2 with one line on standard error that names the
// problem and the help to run, and nothing on standard output; help goes
// to standard output only when asked for.
func TestUsageErrors(t *testing.T) {
	conf := filepath.Join(t.TempDir(), "jm.conf")
	if err := os.WriteFile(conf, []byte("component: job_manager\ndb: { kind: store3 }\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name string
		args []string
		want string // in the one line on stderr
		help string // the help it points to
	}{
		{"no command", nil, "no command given", "deployhook --help"},
		{"unknown command", []string{"migrat"}, `unknown command "migrat"`, "deployhook --help"},
		{"unknown global flag", []string{"--colour", "status"}, "flag provided but not defined: -colour", "deployhook --help"},
		{"migrate without -f", []string{"migrate"}, "missing required flag -f", "deployhook migrate --help"},
		{"run without -f", []string{"run"}, "missing required flag -f", "deployhook run --help"},
		{"status without -f", []string{"status"}, "missing required flag -f", "deployhook status --help"},
		{"wait without -f", []string{"wait", "--timeout", "1s"}, "missing required flag -f", "deployhook wait --help"},
		{"verify without -f", []string{"verify"}, "missing required flag -f", "deployhook verify --help"},
		{"unknown flag", []string{"migrate", "-f", conf, "--dry-run"}, "flag provided but not defined: -dry-run", "deployhook migrate --help"},
		{"bad flag value", []string{"wait", "-f", conf, "--timeout", "soon"}, "invalid value \"soon\" for flag -timeout", "deployhook wait --help"},
		{"argument", []string{"migrate", "-f", conf, "extra"}, `unexpected argument "extra"`, "deployhook migrate --help"},
		{"argument before flags", []string{"status", conf}, `unexpected argument`, "deployhook status --help"},
		{"bad format", []string{"status", "-f", conf, "--format", "yaml"}, `--format must be text or json, not "yaml"`, "deployhook status --help"},
		{"json without dry run", []string{"migrate", "-f", conf, "--format", "json"}, "--format json is for the dry run", "deployhook migrate --help"},
		{"validate without file", []string{"validate"}, "no FILE given", "deployhook validate --help"},
		{"completion without shell", []string{"completion"}, "want one shell", "deployhook completion --help"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			code, out, errs := runCLI(t, tc.args...)
			if code != exitUsage {
				t.Errorf("exit %d, want %d", code, exitUsage)
			}
			if out != "" {
				t.Errorf("stdout not empty:\n%s", out)
			}
			lines := strings.Split(strings.TrimSuffix(errs, "\n"), "\n")
			if len(lines) != 1 || !strings.Contains(errs, tc.want) || !strings.HasSuffix(lines[0], "run '"+tc.help+"'") {
				t.Errorf("stderr is not one line with %q and run '%s':\n%s", tc.want, tc.help, errs)
			}
		})
	}
}

// urfave/cli's Required would print the help page and exit 1: commands
// check their required flags with requireFlags.
func TestNoRequiredFlags(t *testing.T) {
	for _, c := range commands() {
		for _, f := range c.Flags {
			if r, ok := f.(cli.RequiredFlag); ok && r.IsRequired() {
				t.Errorf("command %s: flag %v is marked Required; check it with requireFlags", c.Name, f.Names())
			}
		}
	}
}

// Help asked for goes to standard output, exit 0, nothing on stderr.
func TestHelpOnStdout(t *testing.T) {
	for _, args := range [][]string{{"--help"}, {"help"}, {"migrate", "--help"}, {"help", "wait"}, {"-h"}} {
		code, out, errs := runCLI(t, args...)
		if code != exitOK || errs != "" || !strings.Contains(out, "USAGE") {
			t.Errorf("%v: exit %d, stderr %q, stdout:\n%s", args, code, errs, out)
		}
	}
}

func TestVersion(t *testing.T) {
	code, out, _ := runCLI(t, "--version")
	if code != exitOK || out != "deployhook version "+toolVersion()+"\n" {
		t.Errorf("exit %d, stdout %q, want the build info's %q", code, out, toolVersion())
	}
	for _, tc := range []struct {
		mod, rev string
		dirty    bool
		goV      string
		want     string
	}{
		{"v1.2.3", "0123456789abcdef0123", false, "go1.26.8", "v1.2.3 (rev 0123456789ab, go1.26.8)"},
		{"(devel)", "0123456789abcdef0123", true, "go1.26.8", "(devel) (rev 0123456789ab, dirty, go1.26.8)"},
		{"", "", false, "", "(devel)"},
	} {
		if got := versionString(tc.mod, tc.rev, tc.dirty, tc.goV); got != tc.want {
			t.Errorf("versionString(%q, %q, %t, %q) = %q, want %q", tc.mod, tc.rev, tc.dirty, tc.goV, got, tc.want)
		}
	}
}

// A silent exit error has no message of its own, and printing one must not
// panic.
func TestExitErrorNilSafe(t *testing.T) {
	err := silent(exitFailed)
	if got := err.Error(); got != "exit status 5" {
		t.Errorf("silent(5).Error() = %q", got)
	}
	if messageOf(err) != "" || codeOf(err) != exitFailed {
		t.Errorf("silent: message %q, code %d", messageOf(err), codeOf(err))
	}
	wrapped := errors.Join(errors.New("context"), err)
	if codeOf(wrapped) != exitFailed || messageOf(wrapped) == "" {
		t.Errorf("wrapped silent: message %q, code %d", messageOf(wrapped), codeOf(wrapped))
	}
}

// One colour rule: off with NO_COLOR (non-empty), TERM=dumb, --no-color or
// a non-terminal.
func TestColorRule(t *testing.T) {
	tty := openPTY(t)
	for _, tc := range []struct {
		name     string
		noColor  string
		termName string
		flag     bool
		w        any
		want     bool
	}{
		{"terminal", "", "xterm", false, tty, true},
		{"NO_COLOR", "1", "xterm", false, tty, false},
		{"NO_COLOR empty", "", "xterm", false, tty, true},
		{"TERM=dumb", "", "dumb", false, tty, false},
		{"--no-color", "", "xterm", true, tty, false},
		{"not a terminal", "", "xterm", false, &bytes.Buffer{}, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Setenv("NO_COLOR", tc.noColor)
			t.Setenv("TERM", tc.termName)
			app := &cli.App{Flags: []cli.Flag{noColorFlag}}
			var got bool
			app.Action = func(c *cli.Context) error {
				got = useColor(c, tc.w.(interface{ Write([]byte) (int, error) }))
				return nil
			}
			args := []string{"x"}
			if tc.flag {
				args = append(args, "--no-color")
			}
			if err := app.Run(args); err != nil {
				t.Fatal(err)
			}
			if got != tc.want {
				t.Errorf("useColor = %t, want %t", got, tc.want)
			}
		})
	}
}

// The man page in docs/ is the one the command definitions generate
// (make man rewrites it).
func TestManPageCurrent(t *testing.T) {
	code, out, errs := runCLI(t, "man")
	if code != exitOK || !strings.Contains(out, ".TH deployhook 8") {
		t.Fatalf("man: exit %d, stderr %q", code, errs)
	}
	for _, c := range commands() {
		if !c.Hidden && !strings.Contains(out, c.Name) {
			t.Errorf("man page lacks command %s", c.Name)
		}
	}
	const path = "../../docs/deployhook.8"
	if *updateCLI {
		if err := os.WriteFile(path, []byte(out), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (make man writes it)", err)
	}
	if diff := cmp.Diff(string(want), out); diff != "" {
		t.Errorf("docs/deployhook.8 is stale; run make man (-want +got):\n%s", diff)
	}
}

// The completion scripts ask the binary, whose answers follow the command
// definitions.
func TestCompletion(t *testing.T) {
	for _, sh := range []string{"bash", "zsh"} {
		code, out, _ := runCLI(t, "completion", sh)
		if code != exitOK || !strings.Contains(out, "--generate-bash-completion") || !strings.Contains(out, "deployhook") {
			t.Errorf("completion %s: exit %d:\n%s", sh, code, out)
		}
	}
	// urfave/cli reads the word being completed from os.Args.
	complete := func(args ...string) string {
		t.Helper()
		old := os.Args
		defer func() { os.Args = old }()
		os.Args = append([]string{"deployhook"}, args...)
		_, out, _ := runCLI(t, args...)
		return out
	}
	out := complete("--generate-bash-completion")
	for _, c := range commands() {
		if got := strings.Contains(out, c.Name+"\n"); got == c.Hidden {
			t.Errorf("command %s (hidden %t) listed %t:\n%s", c.Name, c.Hidden, got, out)
		}
	}
	out = complete("migrate", "-", "--generate-bash-completion")
	for _, f := range []string{"-f", "--dry_run_store_migration", "--lock-timeout"} {
		if !strings.Contains(out, f+"\n") {
			t.Errorf("migrate flags lack %s:\n%s", f, out)
		}
	}
	if strings.Contains(out, "--worker") {
		t.Errorf("hidden --worker offered:\n%s", out)
	}
}

// The worker protocol's files, as wait reads them.
func TestReadWorker(t *testing.T) {
	dir := t.TempDir()
	write := func(name, content string) {
		t.Helper()
		if err := os.WriteFile(filepath.Join(dir, name), []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	if w := readWorker(filepath.Join(dir, "none")); w.Ran || w.Died {
		t.Errorf("no directory: %+v", w)
	}
	if w := readWorker(dir); !w.Ran || w.Died || w.Alive {
		t.Errorf("empty directory: %+v", w)
	}
	// A pid file whose process is not a worker: it died without a word.
	write(pidFileName, "2147480000\n")
	if w := readWorker(dir); !w.Died || !strings.Contains(w.Why, "died without a result") {
		t.Errorf("stale pid file: %+v", w)
	}
	write(exitFileName, `{"pid":2147480000,"code":3,"error":"jm.conf: store3 configuration error: CONSUL_CACERT names \"/x\"","finished":"2026-12-02T05:00:00Z"}`)
	if w := readWorker(dir); !w.Died || !strings.Contains(w.Why, "exited with code 3") || !strings.Contains(w.Why, "CONSUL_CACERT") {
		t.Errorf("exit file, code 3: %+v", w)
	}
	os.Remove(filepath.Join(dir, pidFileName))
	write(exitFileName, `{"pid":2147480000,"code":0,"error":"","finished":"2026-12-02T05:00:00Z"}`)
	if w := readWorker(dir); w.Died || w.Exit == nil {
		t.Errorf("exit file, code 0: %+v", w)
	}
	write("current", strings.Repeat("line\n", 30)+"last line\n")
	write(stderrFileName, "panic: boom\n\ngoroutine 1 [running]:\n")
	tail := logTail(dir, 3)
	want := []string{"current: line", "current: line", "current: last line",
		stderrFileName + ": panic: boom", stderrFileName + ": ", stderrFileName + ": goroutine 1 [running]:"}
	if diff := cmp.Diff(want, tail); diff != "" {
		t.Errorf("logTail (-want +got):\n%s", diff)
	}
}

// openPTY opens a new pseudo-terminal and returns its terminal side.
func openPTY(t *testing.T) *os.File {
	t.Helper()
	ptmx, err := os.OpenFile("/dev/ptmx", os.O_RDWR, 0)
	if err != nil {
		t.Skipf("no pseudo-terminals here: %v", err)
	}
	t.Cleanup(func() { ptmx.Close() })
	fd := int(ptmx.Fd())
	if err := unix.IoctlSetPointerInt(fd, unix.TIOCSPTLCK, 0); err != nil {
		t.Fatalf("unlock pty: %v", err)
	}
	n, err := unix.IoctlGetInt(fd, unix.TIOCGPTN)
	if err != nil {
		t.Fatalf("pty number: %v", err)
	}
	tty, err := os.OpenFile(fmt.Sprintf("/dev/pts/%d", n), os.O_RDWR|unix.O_NOCTTY, 0)
	if err != nil {
		t.Fatalf("open pty: %v", err)
	}
	t.Cleanup(func() { tty.Close() })
	return tty
}
