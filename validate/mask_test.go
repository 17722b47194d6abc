package validate

import (
	"bytes"
	"os"
	"path/filepath"
	"testing"

	"github.com/apcera/deployhook/validate/dconf"
	"github.com/google/go-cmp/cmp"
)

// referenceSpans is what the masker must find, written the plain way: every
// regexp over the whole source.
func referenceSpans(src []byte, f *dconf.File) []span {
	var out []span
	if top := f.Top(); top.Ok() {
		out = treeSecrets(top, false, out)
	}
	for _, m := range secretKeyLex.FindAllIndex(src, -1) {
		if s, ok := lexValue(src, m[1]); ok {
			out = append(out, s)
		}
	}
	for _, m := range urlPassword.FindAllSubmatchIndex(src, -1) {
		out = append(out, span{m[2], m[3]})
	}
	for _, m := range pemBegin.FindAllIndex(src, -1) {
		start, end := m[1], len(src)
		if e := pemEnd.FindIndex(src[start:]); e != nil {
			end = start + e[0]
		}
		out = append(out, span{start, end})
	}
	return merge(out)
}

// clip restricts spans to the line src[ls:le].
func clip(ss []span, ls, le int) []span {
	var out []span
	for _, s := range ss {
		if s.end > ls && s.start < le {
			out = append(out, span{max(s.start, ls), min(s.end, le)})
		}
	}
	return out
}

// TestMaskerMatchesReference checks that searching line by line finds, on
// every line, what the regexps find over the whole file: the fixtures plus
// the cases where a span crosses a line break or the case folding is
// Unicode.
func TestMaskerMatchesReference(t *testing.T) {
	srcs := map[string][]byte{
		"block":     []byte("a: 1\nprivate_key (\nline one\n  password: x\n)\nb: 2\n"),
		"backslash": []byte("x: 1\n\"db_password\": \"abc\\\ndef\", k: v\nnext: 1\n"),
		"kelvin":    []byte("api_to\u212aen = s3cr3t\n\u017fecret: hush\n"),
		// In a block string only the lexical search sees a key.
		"in-block": []byte("script (\npassword: \"abc\\\ndef\"\napi_to\u212aen = s3cr3t\n)\n"),
		"url":      []byte("u: postgres://me:hunter2@db/x\n# token: in a comment\n"),
		"pem":      []byte("k: (\n-----BEGIN RSA PRIVATE KEY-----\nMIIE\n-----END RSA PRIVATE KEY-----\n)\n"),
		"crlf":     []byte("secret: a\r\nok: b\r\n"),
	}
	paths, _ := filepath.Glob(filepath.Join("..", "fixtures", "*", "*.conf"))
	for _, p := range paths {
		b, err := os.ReadFile(p)
		if err != nil {
			t.Fatal(err)
		}
		srcs[filepath.Base(p)] = b
	}
	for name, src := range srcs {
		t.Run(name, func(t *testing.T) {
			f, _ := dconf.ParseCompact(src, name)
			want := referenceSpans(src, f)
			if diff := cmp.Diff(want, secretSpans(src, f), cmp.AllowUnexported(span{})); diff != "" {
				t.Errorf("secretSpans (-want +got):\n%s", diff)
			}
			m := newMasker(src, f)
			for ls := 0; ls <= len(src); {
				le := len(src)
				if i := bytes.IndexByte(src[ls:], '\n'); i >= 0 {
					le = ls + i
				}
				if diff := cmp.Diff(clip(want, ls, le), clip(m.line(ls, le), ls, le), cmp.AllowUnexported(span{})); diff != "" {
					t.Errorf("line at %d (-want +got):\n%s", ls, diff)
				}
				ls = le + 1
			}
		})
	}
}

// TestIsSecretKey checks the fast path against the regexp it stands in for.
func TestIsSecretKey(t *testing.T) {
	keys := []string{"password", "db_PassWord", "Secret", "x_token_y", "private_key", "AWS_ACCESS_KEY",
		"pass", "secre", "toke", "privatekey", "access-key", "kind", "", "p", "tokens", "to\u212aen", "\u017fecret",
		"é_password", "naïve", "apitoken", "ACCESS_KEY_ID", "s", "tokeN"}
	for _, k := range keys {
		if got, want := isSecretKey([]byte(k)), secretWord.MatchString(k); got != want {
			t.Errorf("isSecretKey(%q) = %v, regexp says %v", k, got, want)
		}
	}
}
