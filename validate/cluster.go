package validate

import (
	"bytes"
	"errors"
	"fmt"
	"hash/maphash"
	"strings"

	"github.com/apcera/deployhook/migrate"
	"github.com/apcera/deployhook/validate/dconf"
	"github.com/hashicorp/hcl/v2"
)

// The settings keys of DESIGN.md; the store kinds and the rules over them
// are migrate's.
const (
	keyKind    = "kind"
	keyMigrate = "migrate_store2_to_store3"
	keySection = "component_database"
)

// settingsPath is where cluster.conf keeps the settings; Dconf has no dotted
// paths, so it is only ever written as nested maps.
var settingsPath = []string{"chef", "continuum", keySection}

// Cluster is what the rules read from a cluster.conf.
type Cluster struct {
	File     *dconf.File  // from ClusterConf in compact form: Root is nil, read it through Top
	Settings *dconf.Entry // chef → continuum → component_database, or nil
	Kind     string       // store2 or store3; "" when absent or invalid
	Migrate  bool         // migrate_store2_to_store3, false when absent or invalid
}

// ClusterConf parses src and applies the cluster.conf rules. A file that
// still holds ERB tags gets exactly one diagnostic, code erb-template.
//
// The file is parsed in compact form (Cluster.File.Root is nil, see
// dconf.ParseCompact): the rules walk its nodes and make Values only of the
// few settings they read, so a large cluster.conf costs little memory.
func ClusterConf(src []byte, filename string) (*Cluster, hcl.Diagnostics) {
	f, diags := dconf.ParseCompact(src, filename)
	if erb := erbDiag(src, filename, diags); erb != nil {
		return &Cluster{File: f}, hcl.Diagnostics{erb}
	}
	c, more := CheckCluster(f)
	diags = append(diags, more...)
	diags = dropShadowed(diags)
	Sort(diags)
	return c, diags
}

// erbDiag returns the single diagnostic for a file that is an unrendered ERB
// template, or nil. The parser's own erb-template diagnostic is preferred;
// a "<%" in a file that parsed cleanly sits inside a string or comment and
// is left alone.
func erbDiag(src []byte, filename string, diags hcl.Diagnostics) *hcl.Diagnostic {
	for _, d := range diags {
		if dconf.CodeOf(d) == CodeERB {
			return d
		}
	}
	if !diags.HasErrors() {
		return nil
	}
	i := bytes.Index(src, []byte("<%"))
	if i < 0 {
		return nil
	}
	end := i + 2
	if j := bytes.Index(src[i:], []byte("%>")); j >= 0 && !bytes.Contains(src[i:i+j], []byte("\n")) {
		end = i + j + 2
	}
	rng := byteRange(src, filename, i, end)
	return errorf(CodeERB, &rng, "raw ERB template tag: render the template first",
		"This is cluster.conf.erb, not cluster.conf: render the template (as the orchestrator does before a deploy) and validate the rendered file.")
}

// byteRange builds a range from byte offsets, counting columns in runes.
func byteRange(src []byte, filename string, start, end int) hcl.Range {
	return hcl.Range{Filename: filename, Start: posAt(src, start), End: posAt(src, end)}
}

func posAt(src []byte, off int) hcl.Pos {
	line := 1 + bytes.Count(src[:off], []byte("\n"))
	ls := bytes.LastIndexByte(src[:off], '\n') + 1
	return hcl.Pos{Line: line, Column: 1 + len([]rune(string(src[ls:off]))), Byte: off}
}

// CheckCluster applies the cluster.conf rules to a parsed file (from Parse
// or ParseCompact).
func CheckCluster(f *dconf.File) (*Cluster, hcl.Diagnostics) {
	c := &Cluster{File: f}
	root := f.Top()
	if !root.Ok() {
		return c, nil
	}
	ck := &clusterCheck{c: c}
	ck.locate(root)
	ck.walk(root)
	ck.settings()
	ck.components(root)
	return c, ck.diags
}

type clusterCheck struct {
	c         *Cluster
	diags     hcl.Diagnostics
	continuum dconf.Node   // the map holding component_database
	section   dconf.Node   // the component_database map (last wins)
	settingsV *dconf.Value // section as a tree, for the rules that read it
	kind      *dconf.Entry
	migrate   *dconf.Entry
	migrateOK bool // migrate is a well-formed boolean
}

func (ck *clusterCheck) add(d *hcl.Diagnostic) { ck.diags = append(ck.diags, d) }

// locate finds the settings along settingsPath, complaining about a section
// of the path that is not a map.
func (ck *clusterCheck) locate(root dconf.Node) {
	v := root
	for i, k := range settingsPath {
		e := v.Lookup(k)
		if !e.Ok() {
			return
		}
		if e.Kind() != dconf.Map {
			r := e.Range()
			ck.add(errorf(CodeNotMap, &r,
				fmt.Sprintf("%s must be a map, not %s", strings.Join(settingsPath[:i+1], " → "), a(e.Kind())),
				`The store settings live in nested maps: chef: { "continuum": { "component_database": { "kind": store3 } } }.`))
			return
		}
		if i == len(settingsPath)-2 {
			ck.continuum = e
		}
		if i == len(settingsPath)-1 {
			ck.c.Settings = e.Entry()
			ck.section = e
			ck.settingsV = ck.c.Settings.Value
		}
		v = e
	}
}

// walk checks every map of the tree for duplicate and misplaced keys.
func (ck *clusterCheck) walk(v dconf.Node) {
	switch v.Kind() {
	case dconf.Array:
		for el := v.First(); el.Ok(); el = el.Next() {
			ck.walk(el)
		}
		return
	case dconf.Map:
	default:
		return
	}
	ck.duplicates(v)
	for e := v.First(); e.Ok(); e = e.Next() {
		ck.misplaced(v, e)
		ck.walk(e)
	}
}

// inSettings reports whether entry e of map m is a setting or the settings
// section itself, where the rules are stricter.
func (ck *clusterCheck) inSettings(m, e dconf.Node) bool {
	return m.Same(ck.section) || (m.Same(ck.continuum) && e.KeyIs(keySection))
}

// duplicates reports every repeated key of map m. Inside the settings (and
// for the settings section itself) it is an error: last-wins would silently
// drop a setting.
func (ck *clusterCheck) duplicates(m dconf.Node) {
	duplicateKeys(m, func(_ int, e dconf.Node) bool { return ck.inSettings(m, e) }, ck.add)
}

// duplicates is duplicateKeys for a map of a tree from dconf.Parse.
func duplicates(m *dconf.Value, isErr func(*dconf.Entry) bool, add func(*hcl.Diagnostic)) {
	duplicateKeys(m.Node(), func(i int, _ dconf.Node) bool { return isErr(m.Entries[i]) }, add)
}

// duplicateKeys reports every repeated key of map m at its later
// occurrences, citing the first; isErr says which are errors rather than
// warnings, given the entry and its index in the map.
func duplicateKeys(m dconf.Node, isErr func(int, dconf.Node) bool, add func(*hcl.Diagnostic)) {
	// Most maps are small: their entries and keys are compared pairwise
	// from two arrays on the stack.
	var smallNodes [16]dconf.Node
	var smallKeys [16][]byte
	n := 0
	for e := m.First(); e.Ok(); e = e.Next() {
		if n < len(smallNodes) {
			smallNodes[n], smallKeys[n] = e, e.KeyBytes()
		}
		n++
	}
	if n < 2 {
		return
	}
	// A large map finds earlier keys by a hash of their bytes, so that no
	// key is copied into a string.
	var seen map[uint64]dconf.Node
	var seed maphash.Seed
	if n > len(smallNodes) {
		seen = make(map[uint64]dconf.Node, n)
		seed = maphash.MakeSeed()
	}
	i := 0
	for e := m.First(); e.Ok(); e, i = e.Next(), i+1 {
		var first dconf.Node
		if seen == nil {
			for j, k := range smallKeys[:i] {
				if bytes.Equal(k, smallKeys[i]) {
					first = smallNodes[j]
					break
				}
			}
		} else {
			key := e.KeyBytes()
			h := maphash.Bytes(seed, key)
			switch p, ok := seen[h]; {
			case !ok:
				seen[h] = e
			case bytes.Equal(p.KeyBytes(), key):
				first = p
			default: // two keys with one hash: look the slow way
				first = firstWithKey(m, e, key)
			}
		}
		if !first.Ok() {
			continue
		}
		k, line := e.Key(), first.KeyRange().Start.Line
		sev := hcl.DiagWarning
		detail := fmt.Sprintf("%q is first set on line %d; the last one wins, so the earlier value is ignored. Keep one.", k, line)
		if isErr(i, e) {
			sev = hcl.DiagError
			detail = fmt.Sprintf("%q is first set on line %d. In these settings a repeated key is an error: the last one would win silently. Keep exactly one.", k, line)
		}
		kr := e.KeyRange()
		add(newDiag(sev, CodeDuplicateKey, fmt.Sprintf("duplicate key %q", k), detail, &kr,
			dconf.Related{Range: first.KeyRange(), Message: "first set here"}))
	}
}

// firstWithKey returns the first entry of m before e whose key is key, or
// none.
func firstWithKey(m, e dconf.Node, key []byte) dconf.Node {
	for p := m.First(); p.Ok() && !p.Same(e); p = p.Next() {
		if bytes.Equal(p.KeyBytes(), key) {
			return p
		}
	}
	return dconf.Node{}
}

// misplaced warns about a settings key that is not where the settings are
// read, such as a dotted key "continuum.component_database".
func (ck *clusterCheck) misplaced(m, e dconf.Node) {
	if ck.inSettings(m, e) {
		return
	}
	kb := e.KeyBytes()
	if !bytes.Contains(kb, []byte(keySection)) && !bytes.Contains(kb, []byte(keyMigrate)) {
		if m.Same(ck.continuum) && suggest(e.Key(), keySection) != "" {
			kr := e.KeyRange()
			ck.add(warnf(CodeMisplacedSetting, &kr,
				fmt.Sprintf("unknown key %q under continuum", e.Key()),
				"Did you mean component_database? The store settings are read only from chef → continuum → component_database."))
		}
		return
	}
	detail := "The store settings are read only from chef → continuum → component_database; here this key has no effect."
	if bytes.IndexByte(kb, '.') >= 0 {
		detail = fmt.Sprintf("Dconf has no dotted paths: this is one key literally named %q and has no effect. Write nested maps: chef: { \"continuum\": { \"component_database\": { ... } } }.", e.Key())
	}
	kr := e.KeyRange()
	ck.add(warnf(CodeMisplacedSetting, &kr, fmt.Sprintf("%q is not read here", e.Key()), detail))
}

// settings checks the keys and values of component_database.
func (ck *clusterCheck) settings() {
	m := ck.settingsV
	if m == nil {
		return
	}
	for _, e := range m.Entries {
		switch e.Key {
		case keyKind, keyMigrate:
			continue
		}
		ck.add(warnf(CodeUnknownKey, &e.KeyRange,
			fmt.Sprintf("unknown key %q in component_database", e.Key),
			"The known keys are kind and migrate_store2_to_store3."+didYouMean(suggest(e.Key, keyKind, keyMigrate))))
	}
	ck.kind = m.Lookup(keyKind)
	ck.migrate = m.Lookup(keyMigrate)
	if ck.kind != nil {
		kind, d := checkKind(ck.kind, `"kind"`)
		ck.c.Kind = kind
		if d != nil {
			ck.add(d)
		}
	}
	if ck.migrate != nil {
		b, ok, d := checkMigrate(ck.migrate, `"migrate_store2_to_store3"`)
		if d != nil {
			ck.add(d)
		}
		ck.c.Migrate, ck.migrateOK = b, ok
	}
	if !ck.c.Migrate {
		return
	}
	switch {
	case errors.Is(migrate.CheckSettings(ck.c.Kind, ck.c.Migrate), migrate.ErrStore2WithMigrate):
		ck.add(withContextOf(errorf(CodeStore2WithMigrate, &ck.migrate.Value.Range,
			"migrate_store2_to_store3 = true needs kind = store3",
			`Components refuse to start with kind = store2 and the migration flag on. Set "kind": store3 to migrate, or remove migrate_store2_to_store3 to stay on store2.`,
			dconf.Related{Range: ck.kind.Value.Range, Message: "kind is store2 here"}), ck.kind, ck.migrate))
	case ck.kind == nil:
		ck.add(errorf(CodeMigrateWithoutKind, &ck.migrate.Value.Range,
			"migrate_store2_to_store3 = true without kind",
			`Upgraded clusters default to kind = store2, so the intent is ambiguous. To migrate, add "kind": store3 next to the flag; to stay on store2, remove the flag.`,
			dconf.Related{Range: ck.c.Settings.KeyRange, Message: "no kind in this map"}))
	}
}

// broken reports a placeholder the parser put where a value is missing: a
// value cut short by an error. Its error is the parser's.
func broken(v *dconf.Value) bool { return v.Invalid || v.Range.Start.Byte == v.Range.End.Byte }

// withContext sets the diagnostic's Context to cover both entries, so that a
// consumer of the hcl range sees both settings.
func withContextOf(d *hcl.Diagnostic, a, b *dconf.Entry) *hcl.Diagnostic {
	r := hcl.RangeOver(a.Range(), b.Range())
	d.Context = &r
	return d
}

// kindAlias maps names people use for the kinds to the kind, for hints.
var kindAlias = map[string]string{
	"postgres": migrate.KindStore2, "postgresql": migrate.KindStore2, "pg": migrate.KindStore2, "psql": migrate.KindStore2,
	"consul": migrate.KindStore3, "kv": migrate.KindStore3, "consulkv": migrate.KindStore3, "kvstore": migrate.KindStore3,
}

// checkKind returns the kind an entry sets, or a diagnostic naming it as name.
func checkKind(e *dconf.Entry, name string) (string, *hcl.Diagnostic) {
	v := e.Value
	if v.Kind == dconf.String && migrate.CheckKind(v.Str) == nil {
		return v.Str, nil
	}
	if broken(v) {
		return "", nil
	}
	return "", kindDiag(v.Kind, v.Str, &v.Range, name)
}

// kindDiag describes an invalid kind; subject may be nil (a command-line
// flag), name is how the setting is written where it came from.
func kindDiag(k dconf.Kind, s string, subject *hcl.Range, name string) *hcl.Diagnostic {
	if k != dconf.String {
		return errorf(CodeKindInvalid, subject,
			fmt.Sprintf("%s must be store2 or store3, not %s", unquote(name), a(k)),
			fmt.Sprintf("Write %s: store3 (Consul KV) or %s: store2 (PostgreSQL).", name, name))
	}
	hint := suggest(s, migrate.Kinds...)
	if a, ok := kindAlias[normalize(s)]; ok {
		hint = a
	}
	detail := fmt.Sprintf("Write %s: store3 (Consul KV) or %s: store2 (PostgreSQL), lower case.", name, name)
	if hint != "" {
		detail = fmt.Sprintf("Did you mean %s? Write %s: %s.", hint, name, hint)
	}
	shown := s
	if len(shown) > 40 || strings.ContainsAny(shown, "\n\r") {
		shown = shown[:min(len(shown), 40)] + "…"
	}
	return errorf(CodeKindInvalid, subject, fmt.Sprintf("%s %q is not store2 or store3", unquote(name), shown), detail)
}

// checkMigrate returns the boolean an entry sets, or a diagnostic saying how
// to write it.
// ok is false when the value is unusable (then d says why, unless the parser
// already did).
func checkMigrate(e *dconf.Entry, name string) (b, ok bool, d *hcl.Diagnostic) {
	v := e.Value
	switch {
	case v.Kind == dconf.Bool:
		return v.Bool, true, nil
	case broken(v):
		return false, false, nil
	}
	return false, false, migrateDiag(v, name)
}

func migrateDiag(v *dconf.Value, name string) *hcl.Diagnostic {
	want := ""
	switch v.Kind {
	case dconf.String:
		switch strings.ToLower(strings.TrimSpace(v.Str)) {
		case "true", "yes", "on", "y", "enable", "enabled":
			want = "true"
		case "false", "no", "off", "n", "disable", "disabled":
			want = "false"
		}
	case dconf.Int:
		switch v.Int {
		case 1:
			want = "true"
		case 0:
			want = "false"
		}
	}
	switch {
	case want != "" && v.Kind == dconf.String && v.Quote != dconf.Bare && strings.EqualFold(v.Str, want):
		return errorf(CodeMigrateNotBool, &v.Range,
			fmt.Sprintf("%s is the string %q, not a boolean", unquote(name), v.Str),
			fmt.Sprintf("Quotes make it a string. Write %s: %s without quotes.", name, want))
	case want != "":
		return errorf(CodeMigrateNotBool, &v.Range,
			fmt.Sprintf("%s must be true or false, not %s", unquote(name), v.Str+intText(v)),
			fmt.Sprintf("Only the bare words true and false are booleans. Write %s: %s.", name, want))
	}
	return errorf(CodeMigrateNotBool, &v.Range,
		fmt.Sprintf("%s must be true or false, not %s", unquote(name), a(v.Kind)),
		fmt.Sprintf("Write %s: true to migrate store2 into store3 once, or false (the default).", name))
}

func unquote(name string) string { return strings.Trim(name, `"`) }

func intText(v *dconf.Value) string {
	if v.Kind == dconf.Int {
		return fmt.Sprint(v.Int)
	}
	return ""
}

// components checks the counts under the top-level components map that the
// settings need: store3 needs Consul (kv-store), and migrating reads from
// PostgreSQL (component-database).
func (ck *clusterCheck) components(root dconf.Node) {
	var cause *dconf.Entry
	var why string
	switch {
	case ck.c.Migrate:
		cause, why = ck.migrate, "migration is switched on here"
	case ck.c.Kind == migrate.KindStore3:
		cause, why = ck.kind, "kind is store3 here"
	default:
		return
	}
	comps := root.Lookup("components").Entry()
	if ck.c.Migrate {
		ck.need(comps, "component-database", CodeComponentDBMissing, cause, why,
			"migrating reads from store2 (PostgreSQL)",
			"Keep component-database at 1 or more until the migration is done and verified: store2 must stay reachable.")
	}
	what := "kind = store3 keeps component data in Consul"
	if ck.c.Migrate {
		what = "migrating writes to store3 (Consul)"
	}
	ck.need(comps, "kv-store", CodeKVStoreMissing, cause, why, what,
		"Release 3.0 clusters need the kv-store (Consul) component: set kv-store to 1 or more (3 for a highly available cluster).")
}

// need reports a component count under comps that is absent or below 1.
func (ck *clusterCheck) need(comps *dconf.Entry, name, code string, cause *dconf.Entry, why, what, detail string) {
	rel := dconf.Related{Range: cause.Value.Range, Message: why}
	switch {
	case comps == nil:
		ck.add(errorf(code, &cause.Value.Range,
			fmt.Sprintf("no components map, but %s", what),
			fmt.Sprintf("Add a top-level components map with %s: 1 or more. %s", name, detail)))
	case comps.Value.Kind != dconf.Map:
		ck.add(errorf(CodeNotMap, &comps.Value.Range,
			fmt.Sprintf("components must be a map of counts, not %s", a(comps.Value.Kind)),
			fmt.Sprintf("Write components: { %s: 1 }. %s", name, detail), rel))
	default:
		e := comps.Value.Lookup(name)
		switch {
		case e != nil && broken(e.Value):
		case e == nil:
			ck.add(errorf(code, &comps.KeyRange,
				fmt.Sprintf("components has no %s, but %s", name, what),
				fmt.Sprintf("Add %s: 1 or more under components. %s", name, detail), rel))
		case e.Value.Kind != dconf.Int:
			ck.add(errorf(code, &e.Value.Range,
				fmt.Sprintf("%s count must be an integer, not %s", name, a(e.Value.Kind)),
				fmt.Sprintf("Write %s: 1 (bare, without quotes). %s", name, detail), rel))
		case e.Value.Int < 1:
			ck.add(errorf(code, &e.Value.Range,
				fmt.Sprintf("%s: %d, but %s", name, e.Value.Int, what),
				detail, rel))
		}
	}
}
