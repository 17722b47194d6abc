package main

import (
	"bytes"
	"encoding/json"
	"flag"
	"os"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

var updateCLI = flag.Bool("update", false, "rewrite the golden files under fixtures/")

const fx = "../../fixtures/validate/"

func run(t *testing.T, stdin string, args ...string) (int, string, string) {
	t.Helper()
	var out, errb bytes.Buffer
	code := runMain(append([]string{"deployhook", "validate"}, args...), strings.NewReader(stdin), &out, &errb)
	return code, out.String(), errb.String()
}

func TestValidateExitCodes(t *testing.T) {
	invalid, err := os.ReadFile(fx + "invalid-store2-with-migrate.conf")
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name  string
		stdin string
		args  []string
		want  int
	}{
		{"valid", "", []string{fx + "valid-runbook.conf"}, exitOK},
		{"warnings only", "", []string{fx + "warn-unknown-key.conf"}, exitOK},
		{"invalid", "", []string{fx + "invalid-kind-typo.conf"}, exitInvalid},
		{"valid and invalid", "", []string{fx + "valid-store2.conf", fx + "invalid-erb.conf"}, exitInvalid},
		{"json invalid", "", []string{"--format", "json", fx + "invalid-migrate-yes.conf"}, exitInvalid},
		{"stdin invalid", string(invalid), []string{"-"}, exitInvalid},
		{"stdin valid", "components: { kv-store: 3 }\n", []string{"-"}, exitOK},
		{"missing file", "", []string{fx + "no-such.conf"}, exitUsage},
		{"unreadable beats invalid", "", []string{fx + "invalid-kind-typo.conf", fx + "no-such.conf"}, exitUsage},
		{"directory", "", []string{fx}, exitUsage},
		{"no file", "", nil, exitUsage},
		{"bad format", "", []string{"--format", "yaml", fx + "valid-runbook.conf"}, exitUsage},
		{"unknown flag", "", []string{"--colour", fx + "valid-runbook.conf"}, exitUsage},
	} {
		t.Run(tc.name, func(t *testing.T) {
			code, out, errs := run(t, tc.stdin, tc.args...)
			if code != tc.want {
				t.Errorf("exit %d, want %d\nstdout:\n%s\nstderr:\n%s", code, tc.want, out, errs)
			}
			if strings.Contains(out, "\x1b[") {
				t.Errorf("colour on a non-terminal:\n%s", out)
			}
		})
	}
}

func TestValidateStdinName(t *testing.T) {
	src, err := os.ReadFile(fx + "invalid-store2-with-migrate.conf")
	if err != nil {
		t.Fatal(err)
	}
	_, out, _ := run(t, string(src), "-")
	if !strings.Contains(out, "<stdin>:10:35: error[store2-with-migrate]:") || !strings.Contains(out, "<stdin>: 1 error, 0 warnings") {
		t.Errorf("stdin output:\n%s", out)
	}
}

func TestValidateUnreadableMessage(t *testing.T) {
	code, out, errs := run(t, "", fx+"no-such.conf", fx+"valid-runbook.conf")
	if code != exitUsage || !strings.Contains(errs, "no-such.conf") {
		t.Errorf("exit %d, stderr %q", code, errs)
	}
	if !strings.Contains(out, "valid-runbook.conf: 0 errors, 0 warnings") {
		t.Errorf("the readable file was not validated:\n%s", out)
	}
}

func TestValidateJSON(t *testing.T) {
	code, out, _ := run(t, "", "--format", "json", fx+"invalid-store2-with-migrate.conf", fx+"invalid-secrets.conf", fx+"valid-runbook.conf")
	if code != exitInvalid {
		t.Fatalf("exit %d", code)
	}
	var got []struct {
		Severity, Code, Summary, Detail, File string
		Start, End                            *struct{ Line, Column, Byte int }
	}
	if err := json.Unmarshal([]byte(out), &got); err != nil {
		t.Fatalf("%v\n%s", err, out)
	}
	if len(got) == 0 {
		t.Fatal("no diagnostics")
	}
	last := got[len(got)-1]
	if last.Code != "store2-with-migrate" || last.Severity != "error" || last.File != fx+"invalid-store2-with-migrate.conf" ||
		last.Start == nil || last.Start.Line != 10 || last.Start.Column != 35 || last.End.Column != 39 {
		t.Errorf("last diagnostic: %+v", last)
	}
	for _, s := range []string{"hunter2", "s3cr3t", "MIIE", "VaultToken", "pw-in-kind"} {
		if strings.Contains(out, s) {
			t.Errorf("JSON shows secret %q", s)
		}
	}
	_, out, _ = run(t, "", "--format", "json", fx+"valid-runbook.conf")
	if out != "[]\n" {
		t.Errorf("valid file: %q", out)
	}
}

// TestValidateGolden is the whole text output for two files, one of them
// clean.
func TestValidateGolden(t *testing.T) {
	_, out, _ := run(t, "", fx+"valid-runbook.conf", fx+"invalid-no-kv-store.conf", fx+"warn-duplicate-elsewhere.conf")
	const path = fx + "cli-three-files.golden"
	if *updateCLI {
		if err := os.WriteFile(path, []byte(out), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(string(want), out); diff != "" {
		t.Errorf("(-want +got):\n%s", diff)
	}
}
