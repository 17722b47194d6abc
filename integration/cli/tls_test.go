//go:build integration

package cli

import (
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/apcera/deployhook/integration/clitest"
	"github.com/apcera/deployhook/integration/harness"
)

// Configuration errors that no retry fixes are found by `run` and `migrate`
// in the foreground, exit 3 naming the file or setting, and no worker
// starts; a Consul that merely does not answer is left to the worker. The
// Consul here serves its API over TLS with a CA made by the test, and
// requires client certificates.
func TestTLSConfigurationInTheForeground(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	ca, err := harness.NewTestCA(dir, "test")
	if err != nil {
		t.Fatal(err)
	}
	other, err := harness.NewTestCA(dir, "other")
	if err != nil {
		t.Fatal(err)
	}
	https, err := harness.WithHTTPS(ca, true)
	if err != nil {
		t.Fatal(err)
	}
	consul := harness.StartConsul(t, https, harness.WithLogLevel("warn"))
	cert, key, err := ca.Issue("client", false)
	if err != nil {
		t.Fatal(err)
	}
	httpsAddr := consul.HTTPSAddr()
	good := []string{"CONSUL_CACERT=" + ca.CAFile, "CONSUL_CLIENT_CERT=" + cert, "CONSUL_CLIENT_KEY=" + key}
	missing := filepath.Join(dir, "no-such-ca.pem")

	for _, tc := range []struct {
		name  string
		addr  string
		vars  []string
		want  []string // in stderr
		token string   // db.consul.token_file
	}{
		{"token file missing", httpsAddr, good, []string{"consul.token_file", "no-such-token"}, filepath.Join(dir, "no-such-token")},
		{"CA file missing", httpsAddr, []string{"CONSUL_CACERT=" + missing, "CONSUL_CLIENT_CERT=" + cert, "CONSUL_CLIENT_KEY=" + key},
			[]string{"CONSUL_CACERT", missing, "no such file"}, ""},
		{"client key missing", httpsAddr, []string{"CONSUL_CACERT=" + ca.CAFile, "CONSUL_CLIENT_CERT=" + cert, "CONSUL_CLIENT_KEY=" + filepath.Join(dir, "gone-key.pem")},
			[]string{"CONSUL_CLIENT_KEY", "gone-key.pem"}, ""},
		{"CA is not a certificate", httpsAddr, []string{"CONSUL_CACERT=" + key, "CONSUL_CLIENT_CERT=" + cert, "CONSUL_CLIENT_KEY=" + key},
			[]string{"store3 configuration error"}, ""},
		{"server signed by another CA", httpsAddr, []string{"CONSUL_CACERT=" + other.CAFile, "CONSUL_CLIENT_CERT=" + cert, "CONSUL_CLIENT_KEY=" + key},
			[]string{"store3 configuration error", "x509", "CONSUL_CACERT"}, ""},
		{"wrong server name", httpsAddr, append([]string{"CONSUL_TLS_SERVER_NAME=wrong.example"}, good...),
			[]string{"store3 configuration error", "wrong.example"}, ""},
		{"no client certificate", httpsAddr, []string{"CONSUL_CACERT=" + ca.CAFile},
			[]string{"store3 configuration error", "certificate"}, ""},
		{"https to the plain port", "https://" + consul.Addr(), good,
			[]string{"store3 configuration error"}, ""},
		{"plain http to the https port", strings.TrimPrefix(httpsAddr, "https://"), good,
			[]string{"store3 configuration error", "CONSUL_HTTP_SSL"}, ""},
		{"address does not parse", "127.0.0.1:port", good,
			[]string{"consul address", "127.0.0.1:port"}, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := newEnv(t, consul)
			e.Vars = append(e.Vars, tc.vars...)
			logDir := filepath.Join(e.Dir, "log")
			conf := e.conf(5, clitest.Conf{Address: tc.addr, LogDir: logDir, TokenFile: tc.token})
			for _, cmd := range [][]string{{"run", "-f", conf}, {"migrate", "-f", conf}, {"migrate", "-f", conf, "-dry_run_store_migration"},
				{"status", "-f", conf}, {"wait", "-f", conf, "--timeout", "1m"}, {"verify", "-f", conf}} {
				r := e.MustRun(3, cmd...)
				for _, w := range tc.want {
					if !strings.Contains(r.Stderr, w) {
						t.Errorf("%s: stderr lacks %q:\n%s", cmd[0], w, r)
					}
				}
			}
			if _, err := os.Stat(logDir); !os.IsNotExist(err) {
				t.Errorf("log dir %s exists: a worker was started (%v)", logDir, err)
			}
		})
	}

	t.Run("good", func(t *testing.T) {
		e := newEnv(t, consul)
		e.Vars = append(e.Vars, good...)
		conf := e.conf(50, clitest.Conf{Address: httpsAddr})
		e.MustRun(0, "run", "-f", conf)
		r := e.MustRun(0, "wait", "-f", conf, "--timeout", "2m")
		if !strings.Contains(r.Stdout, "job_manager: done: migrated by") {
			t.Errorf("wait:\n%s", r)
		}
		e.MustRun(0, "verify", "-f", conf)
	})

	// Nothing listening is transient: run starts the worker, which retries.
	t.Run("nothing listening", func(t *testing.T) {
		e := newEnv(t, consul)
		e.Vars = append(e.Vars, good...)
		logDir := filepath.Join(e.Dir, "log")
		conf := e.conf(5, clitest.Conf{Address: "https://" + harness.ClosedAddr(t), LogDir: logDir})
		r := e.MustRun(0, "run", "-f", conf)
		if !strings.Contains(r.Stderr, "starting the migration anyway, it retries") {
			t.Errorf("run:\n%s", r)
		}
		b, err := os.ReadFile(filepath.Join(logDir, "deployhook.pid"))
		if err != nil {
			t.Fatalf("no worker pid file: %v\n%s", err, r)
		}
		pid, _ := strconv.Atoi(strings.TrimSpace(string(b)))
		if err := syscall.Kill(pid, syscall.SIGTERM); err != nil {
			t.Fatalf("stop the worker %d: %v", pid, err)
		}
		waitFor(t, 30*time.Second, "the worker to exit", func() bool { return !alive(pid) })
	})
}
