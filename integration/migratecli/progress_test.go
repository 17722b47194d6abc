//go:build integration

package migratecli

import (
	"fmt"
	"os/exec"
	"strings"
	"testing"

	"github.com/apcera/deployhook/integration/clitest"
)

// On a terminal, a foreground migrate draws a progress bar (records done,
// records/s, ETA) and still prints every log line whole; off a terminal it
// prints plain lines only. script(1) gives the binary a real pseudo-terminal.
func TestProgressBarOnTerminal(t *testing.T) {
	if _, err := exec.LookPath("script"); err != nil {
		t.Skip("script(1) not installed (util-linux)")
	}
	t.Parallel()
	e := newEnv(t)
	recs := recordsFor("jm", 20000)
	conf := e.conf("job_manager", "jm", recs, clitest.Conf{})
	cmd := e.Command("migrate", "-f", conf)
	line := strings.Join(append([]string{shellQuote(e.Bin)}, shellQuoteAll(cmd.Args[1:])...), " ")
	tty := exec.Command("script", "-qfec", line, "/dev/null")
	tty.Env = cmd.Env
	out, err := tty.CombinedOutput()
	if err != nil {
		t.Fatalf("migrate under a terminal: %v\n%s", err, out)
	}
	s := string(out)
	for _, want := range []string{fmt.Sprintf("%d/%d records (100%%)", len(recs), len(recs)), "records/s, ETA", "Migrated store2 -> store3 (took: "} {
		if !strings.Contains(s, want) {
			t.Errorf("terminal output lacks %q:\n%s", want, s)
		}
	}
	// Off a terminal: no bar, no escape sequences.
	r := e.MustRun(0, "migrate", "-f", e.conf("job_manager", "jm2", recordsFor("jm2", 2000), clitest.Conf{}))
	if strings.Contains(r.Stderr, "\x1b[") || strings.Contains(r.Stderr, "records/s, ETA") {
		t.Errorf("progress bar drawn off a terminal:\n%q", r.Stderr)
	}
}

func shellQuote(s string) string { return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'" }

func shellQuoteAll(args []string) []string {
	out := make([]string, len(args))
	for i, a := range args {
		out[i] = shellQuote(a)
	}
	return out
}
