//go:build integration

package reliability

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/apcera/deployhook/integration/clitest"
	"github.com/apcera/deployhook/integration/harness"
)

// psWatch records the command lines of every deployhook process while it
// runs, from /proc and from ps, as an operator on the host would see them.
type psWatch struct {
	mu    sync.Mutex
	seen  map[string]bool
	stop  chan struct{}
	done  chan struct{}
	count int
}

func watchPS() *psWatch {
	w := &psWatch{seen: map[string]bool{}, stop: make(chan struct{}), done: make(chan struct{})}
	go func() {
		defer close(w.done)
		for {
			ents, _ := os.ReadDir("/proc")
			for _, e := range ents {
				b, err := os.ReadFile(filepath.Join("/proc", e.Name(), "cmdline"))
				if err != nil || !strings.Contains(string(b), "deployhook") {
					continue
				}
				w.mu.Lock()
				w.seen[strings.ReplaceAll(string(b), "\x00", " ")] = true
				w.mu.Unlock()
			}
			if out, err := exec.Command("ps", "-eo", "pid,args").Output(); err == nil {
				for _, l := range strings.Split(string(out), "\n") {
					if strings.Contains(l, "deployhook") {
						w.mu.Lock()
						w.seen["ps: "+l] = true
						w.mu.Unlock()
					}
				}
			}
			w.mu.Lock()
			w.count++
			w.mu.Unlock()
			select {
			case <-w.stop:
				return
			case <-time.After(20 * time.Millisecond):
			}
		}
	}()
	return w
}

func (w *psWatch) close() []string {
	close(w.stop)
	<-w.done
	var out []string
	for l := range w.seen {
		out = append(out, l)
	}
	return out
}

// TestSecretsNeverLeak runs everything with a Consul ACL token (token_file)
// and the PostgreSQL password (pgpass, and once in the conf's URL), plus a
// wrong password and a wrong token in files, and greps every log line,
// stdout and stderr, .status and .done, and every deployhook command line
// seen in /proc and ps while the processes ran: no secret appears.
func TestSecretsNeverLeak(t *testing.T) {
	runs := 0
	scenario(t, "secrets", 1, 1, &runs)
	pg, consul := harness.StartPostgres(t), harness.StartConsul(t, harness.WithACL())
	env := clitest.New(t, pg, consul)
	token, err := consul.CreateToken(`key_prefix "apcera/store3/" { policy = "write" }
session_prefix "" { policy = "write" }
node_prefix "" { policy = "read" }
agent_prefix "" { policy = "read" }`)
	if err != nil {
		t.Fatal(err)
	}
	tokenFile := filepath.Join(env.Dir, "consul.token")
	if err := os.WriteFile(tokenFile, []byte(token+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	badTokenFile := filepath.Join(env.Dir, "bad.token")
	const badToken = "0badc0de-5ec2-e7e7-0ken-000000000000"
	const badPassword = "Wr0ngPassw0rd-secret-xyz"
	if err := os.WriteFile(badTokenFile, []byte(badToken+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	secrets := map[string]string{
		"postgres password":       pg.Password(),
		"consul token":            token,
		"consul management":       consul.ManagementToken(),
		"wrong postgres password": badPassword,
		"wrong consul token":      badToken,
	}

	n := 20000
	env.Seed("job_manager", genAll(n, seqRecords("jobs", n)))
	env.Seed("package_manager", clitest.Records(3000))
	env.Seed("auth_server", clitest.Records(100))
	badURL := strings.Replace(pg.URL("asdb"), pg.Password(), badPassword, 1)
	confs := map[string]string{
		"pgpass":       env.WriteConf(clitest.Conf{Component: "job_manager", TokenFile: tokenFile}),
		"url-password": env.WriteConf(clitest.Conf{Component: "package_manager", TokenFile: tokenFile, URL: pg.URL("pmdb")}),
		"bad-password": env.WriteConf(clitest.Conf{Component: "auth_server", TokenFile: tokenFile, URL: badURL}),
		"bad-token":    env.WriteConf(clitest.Conf{Component: "auth_server", TokenFile: badTokenFile, Name: "bad-token.conf", LogDir: filepath.Join(env.Dir, "log", "bad-token")}),
	}

	ps := watchPS()
	var outputs []string
	record := func(what string, stdout, stderr string) {
		outputs = append(outputs, fmt.Sprintf("[%s stdout]\n%s[%s stderr]\n%s", what, stdout, what, stderr))
	}
	// The two that migrate, as background workers while ps watches.
	for _, name := range []string{"pgpass", "url-password"} {
		r := env.MustRun(0, "run", "-f", confs[name], "--hostname", "secret-host")
		record("run "+name, r.Stdout, r.Stderr)
	}
	w := env.Run("wait", "-f", confs["pgpass"], "-f", confs["url-password"], "--timeout", "3m")
	record("wait", w.Stdout, w.Stderr)
	if w.Code != 0 {
		t.Errorf("wait: %s", w)
	}
	clitest.WaitWorkersGone(t, time.Minute)
	// Foreground commands, a dry run and the failures.
	for _, args := range [][]string{
		{"migrate", "-f", confs["url-password"]},
		{"migrate", "-dry_run_store_migration", "-f", confs["pgpass"]},
		{"status", "-f", confs["pgpass"], "-f", confs["url-password"]},
		{"status", "--format", "json", "-f", confs["url-password"]},
		{"verify", "-f", confs["url-password"]},
		{"validate", confs["url-password"]},
		{"run", "-f", confs["bad-password"], "-db.migrate_store2_to_store3=false"},
	} {
		r := env.Run(args...)
		record(strings.Join(args, " "), r.Stdout, r.Stderr)
	}
	for _, name := range []string{"bad-password", "bad-token"} {
		p := clitest.StartProc(t, env, "migrate", "-f", confs[name], "--hostname", "secret-host")
		select {
		case <-p.Done():
		case <-time.After(20 * time.Second):
			p.Cmd.Process.Signal(os.Interrupt)
			p.Wait(t, 30*time.Second)
		}
		t.Logf("migrate %s: exit %d: %.300s", name, p.Code, p.Stderr.String())
		if p.Code == 0 {
			t.Errorf("migrate with a %s succeeded", name)
		}
		record("migrate "+name, p.Stdout.String(), p.Stderr.String())
	}
	cmdlines := ps.close()
	if len(cmdlines) == 0 {
		t.Errorf("saw no deployhook process in /proc or ps: the watch did not work")
	}
	workerSeen := false
	for _, l := range cmdlines {
		workerSeen = workerSeen || strings.Contains(l, "--worker")
	}
	if !workerSeen {
		t.Errorf("never saw a worker's command line; seen: %q", cmdlines)
	}

	var sources []struct{ what, text string }
	add := func(what, text string) { sources = append(sources, struct{ what, text string }{what, text}) }
	for _, o := range outputs {
		add("command output", o)
	}
	for _, l := range cmdlines {
		add("command line", l)
	}
	filepath.WalkDir(filepath.Join(env.Dir, "log"), func(path string, d os.DirEntry, err error) error {
		if err == nil && !d.IsDir() {
			b, _ := os.ReadFile(path)
			add("log file "+path, string(b))
		}
		return nil
	})
	for _, c := range []string{"job_manager", "package_manager", "auth_server"} {
		kv, _ := clitest.RawKVAt(t, consul.Addr(), consul.ManagementToken(), clitest.DefaultPrefix(c)+"migration/")
		for k, v := range kv {
			add("store3 "+k, string(v.Value))
		}
	}
	lines := 0
	for _, s := range sources {
		lines += strings.Count(s.text, "\n")
		for name, secret := range secrets {
			if secret != "" && strings.Contains(s.text, secret) {
				i := strings.Index(s.text, secret)
				t.Errorf("SECRET LEAKED: %s appears in %s: ...%s...", name, s.what, s.text[max(0, i-200):min(len(s.text), i+len(secret)+50)])
			}
		}
	}
	t.Logf("searched %d sources (%d lines, %d command lines from %d /proc+ps scans) for %d secrets", len(sources), lines, len(cmdlines), ps.count, len(secrets))
	checkDone := func(c string) {
		mustDone(t, env, clitest.DefaultPrefix(c), store2(t, env, clitest.DatabaseOf(c)))
	}
	checkDone("job_manager")
	checkDone("package_manager")
	runs++
}
