// Package validate holds the rules deployhook applies to cluster.conf and to
// the component confs, the typed settings they produce, and the rendering of
// their diagnostics as text (file:line:col, source line, caret) and JSON.
//
// Every diagnostic carries a stable code in its Extra (*dconf.Extra); the
// codes are listed below. Summaries and details never quote the value of a
// secret key.
package validate

import (
	"sort"
	"strings"

	"github.com/apcera/deployhook/validate/dconf"
	"github.com/hashicorp/hcl/v2"
)

// Codes of the diagnostics this package produces. The parser's own codes
// (syntax errors) pass through unchanged.
const (
	CodeERB                = "erb-template"               // raw ERB: render the template first
	CodeKindInvalid        = "kind-invalid"               // kind is not store2 or store3
	CodeKindMissing        = "kind-missing"               // component conf: db.kind absent
	CodeMigrateNotBool     = "migrate-not-bool"           // migrate_store2_to_store3 is not a bare true/false
	CodeStore2WithMigrate  = "store2-with-migrate"        // kind = store2 and migrate_store2_to_store3 = true
	CodeMigrateWithoutKind = "migrate-without-kind"       // migrating with kind absent
	CodeUnknownKey         = "unknown-key"                // a key the rules do not know (warning)
	CodeDuplicateKey       = "duplicate-key"              // a key twice in one map
	CodeMisplacedSetting   = "misplaced-setting"          // a settings key outside chef → continuum → component_database (warning)
	CodeNotMap             = "not-a-map"                  // a section that must be a map is not
	CodeComponentDBMissing = "component-database-missing" // migrating without a component-database count ≥ 1
	CodeKVStoreMissing     = "kv-store-missing"           // store3 or migrating without a kv-store count ≥ 1
	CodeComponentMissing   = "component-missing"          // component conf: component absent
	CodeComponentInvalid   = "component-invalid"          // component conf: not job_manager, package_manager, auth_server
	CodeTypeMismatch       = "type-mismatch"              // component conf: a value of the wrong type
	CodeTableInvalid       = "table-invalid"              // component conf: db.postgres.table is not an identifier
	CodePathInvalid        = "path-invalid"               // component conf: log_dir is not absolute
	CodePrefixInvalid      = "prefix-invalid"             // component conf: a store3 prefix that could wipe foreign data
)

func newDiag(sev hcl.DiagnosticSeverity, code, summary, detail string, subject *hcl.Range, related ...dconf.Related) *hcl.Diagnostic {
	var subj *hcl.Range
	if subject != nil {
		r := *subject
		subj = &r
	}
	return &hcl.Diagnostic{
		Severity: sev,
		Summary:  summary,
		Detail:   detail,
		Subject:  subj,
		Extra:    &dconf.Extra{Code: code, Related: related},
	}
}

func errorf(code string, subject *hcl.Range, summary, detail string, related ...dconf.Related) *hcl.Diagnostic {
	return newDiag(hcl.DiagError, code, summary, detail, subject, related...)
}

func warnf(code string, subject *hcl.Range, summary, detail string, related ...dconf.Related) *hcl.Diagnostic {
	return newDiag(hcl.DiagWarning, code, summary, detail, subject, related...)
}

// RelatedOf returns the secondary locations of a diagnostic.
func RelatedOf(d *hcl.Diagnostic) []dconf.Related {
	if x, ok := d.Extra.(*dconf.Extra); ok {
		return x.Related
	}
	return nil
}

// Sort puts diagnostics in their stable order: file name, byte offset of the
// subject (diagnostics without a subject first), severity (errors first),
// code, summary.
func Sort(diags hcl.Diagnostics) {
	sort.SliceStable(diags, func(i, j int) bool {
		a, b := diags[i], diags[j]
		fa, oa := where(a)
		fb, ob := where(b)
		if fa != fb {
			return fa < fb
		}
		if oa != ob {
			return oa < ob
		}
		if a.Severity != b.Severity {
			return a.Severity < b.Severity // DiagError (1) before DiagWarning (2)
		}
		if ca, cb := dconf.CodeOf(a), dconf.CodeOf(b); ca != cb {
			return ca < cb
		}
		return a.Summary < b.Summary
	})
}

func where(d *hcl.Diagnostic) (string, int) {
	if d.Subject == nil {
		return "", -1
	}
	if d.Subject.Start.Line == 0 { // the whole file, no position
		return d.Subject.Filename, -1
	}
	return d.Subject.Filename, d.Subject.Start.Byte
}

// suggest returns the candidate nearest to s (ignoring case, spaces, "-" and
// "_"), or "" when none is near enough to be a likely typo.
func suggest(s string, candidates ...string) string {
	n := normalize(s)
	best, bestD := "", 1<<30
	for _, c := range candidates {
		nc := normalize(c)
		d := distance(n, nc)
		if n != "" && len(n) >= 4 && strings.HasPrefix(nc, n) {
			d = min(d, 1) // "migrate" for "migrate_store2_to_store3"
		}
		limit := max(2, len(nc)/4)
		if d <= limit && d < bestD {
			best, bestD = c, d
		}
	}
	return best
}

func normalize(s string) string {
	var b strings.Builder
	for _, r := range strings.ToLower(s) {
		switch r {
		case ' ', '\t', '-', '_', '"', '\'':
			continue
		}
		b.WriteRune(r)
	}
	return b.String()
}

// distance is the optimal string alignment (restricted Damerau-Levenshtein)
// distance between a and b, counted in runes.
func distance(a, b string) int {
	ra, rb := []rune(a), []rune(b)
	prev2 := make([]int, len(rb)+1)
	prev := make([]int, len(rb)+1)
	cur := make([]int, len(rb)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(ra); i++ {
		cur[0] = i
		for j := 1; j <= len(rb); j++ {
			cost := 1
			if ra[i-1] == rb[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
			if i > 1 && j > 1 && ra[i-1] == rb[j-2] && ra[i-2] == rb[j-1] {
				cur[j] = min(cur[j], prev2[j-2]+1)
			}
		}
		prev2, prev, cur = prev, cur, prev2
	}
	return prev[len(rb)]
}

// didYouMean formats a suggestion for a detail, or "".
func didYouMean(s string) string {
	if s == "" {
		return ""
	}
	return " Did you mean " + s + "?"
}

// dropShadowed removes the parser's warning about a value that a rule
// reports as an error at the same place (a bare yes for the migrate flag is
// an ambiguous-boolean warning and a migrate-not-bool error).
func dropShadowed(diags hcl.Diagnostics) hcl.Diagnostics {
	type key struct {
		file string
		s, e int
	}
	errs := map[key]bool{}
	for _, d := range diags {
		if d.Severity == hcl.DiagError && d.Subject != nil && dconf.CodeOf(d) == CodeMigrateNotBool {
			errs[key{d.Subject.Filename, d.Subject.Start.Byte, d.Subject.End.Byte}] = true
		}
	}
	if len(errs) == 0 {
		return diags
	}
	out := diags[:0]
	for _, d := range diags {
		if d.Severity == hcl.DiagWarning && d.Subject != nil && errs[key{d.Subject.Filename, d.Subject.Start.Byte, d.Subject.End.Byte}] {
			continue
		}
		out = append(out, d)
	}
	return out
}

// a is the kind with its indefinite article: "a string", "an integer".
func a(k dconf.Kind) string {
	s := k.String()
	if strings.ContainsRune("aeiou", rune(s[0])) {
		return "an " + s
	}
	return "a " + s
}
