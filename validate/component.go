package validate

import (
	"errors"
	"fmt"
	"path"
	"strings"

	"github.com/apcera/deployhook/migrate"
	"github.com/apcera/deployhook/validate/dconf"
	"github.com/hashicorp/hcl/v2"
)

// ComponentInfo is one row of DESIGN.md "Components".
type ComponentInfo struct {
	Name     string // job_manager
	Short    string // jm
	Database string // store2 database: jmdb
	Prefix   string // store3 prefix: apcera/store3/jmdb/
	Service  string // runit service: continuum-job-manager
	LogDir   string // default log directory of the migration
}

// Components is the table of the components that migrate.
var Components = []ComponentInfo{
	{"job_manager", "jm", "jmdb", "apcera/store3/jmdb/", "continuum-job-manager", "/var/log/continuum-job-manager-migration"},
	{"package_manager", "pm", "pmdb", "apcera/store3/pmdb/", "continuum-package-manager", "/var/log/continuum-package-manager-migration"},
	{"auth_server", "as", "asdb", "apcera/store3/asdb/", "continuum-auth-server", "/var/log/continuum-auth-server-migration"},
}

// LookupComponent returns the row of Components named name.
func LookupComponent(name string) (ComponentInfo, bool) {
	for _, ci := range Components {
		if ci.Name == name {
			return ci, true
		}
	}
	return ComponentInfo{}, false
}

// Component is a loaded component conf (DESIGN.md "Component conf"), with the
// defaults of its component filled in. Consul.Address, Consul.TokenFile and
// Postgres.URL stay empty when the file does not set them: the command layer
// falls back to the CONSUL_* and PG* environment.
type Component struct {
	Name     string // job_manager | package_manager | auth_server
	Kind     string // store2 | store3
	Migrate  bool
	Postgres struct{ URL, Table string }                 // Table default migrate.DefaultTable
	Consul   struct{ Address, Prefix, TokenFile string } // Prefix default from component
	LogDir   string                                      // default from component
	Database string                                      // jmdb / pmdb / asdb
	Service  string                                      // continuum-job-manager etc.
	Short    string                                      // jm / pm / as
	File     string                                      // where it was loaded from

	kindRange, migrateRange *hcl.Range // where the file set them, for Override
}

// LoadComponent parses a component conf and checks it. The Component is never
// nil; it is usable only when the diagnostics hold no error.
//
// A file without db.kind gets an error with code kind-missing; a caller that
// has -db.kind may drop that one diagnostic and call Override, which checks
// the combined settings again.
func LoadComponent(src []byte, filename string) (*Component, hcl.Diagnostics) {
	c := &Component{File: filename}
	c.Postgres.Table = migrate.DefaultTable
	f, diags := dconf.Parse(src, filename)
	if erb := erbDiag(src, filename, diags); erb != nil {
		return c, hcl.Diagnostics{erb}
	}
	if f != nil && f.Root != nil {
		diags = append(diags, c.load(f.Root)...)
	}
	diags = dropShadowed(diags)
	Sort(diags)
	return c, diags
}

// componentKeys etc. are the keys each map of a component conf knows.
var (
	componentKeys = []string{"component", "db", "log_dir"}
	dbKeys        = []string{keyKind, keyMigrate, "postgres", "consul"}
	postgresKeys  = []string{"url", "table"}
	consulKeys    = []string{"address", "prefix", "token_file"}
)

type loader struct {
	file  hcl.Range // the whole file: a Filename without position
	diags hcl.Diagnostics
}

func (l *loader) add(d *hcl.Diagnostic) { l.diags = append(l.diags, d) }

// entries checks map v (named name) for duplicates and unknown keys and
// returns its last entry for each known key.
func (l *loader) entries(v *dconf.Value, name string, known []string) map[string]*dconf.Entry {
	duplicates(v, func(*dconf.Entry) bool { return true }, l.add)
	out := make(map[string]*dconf.Entry, len(known))
	for _, e := range v.Entries {
		ok := false
		for _, k := range known {
			ok = ok || k == e.Key
		}
		if !ok {
			l.add(warnf(CodeUnknownKey, &e.KeyRange,
				fmt.Sprintf("unknown key %q in %s", e.Key, name),
				fmt.Sprintf("The known keys are %s.%s", strings.Join(known, ", "), didYouMean(suggest(e.Key, known...)))))
			continue
		}
		out[e.Key] = e
	}
	return out
}

// sub returns the map value of e, or nil with a type diagnostic.
func (l *loader) sub(e *dconf.Entry, name string) *dconf.Value {
	if e == nil {
		return nil
	}
	if e.Value.Kind != dconf.Map {
		l.add(errorf(CodeTypeMismatch, &e.Value.Range,
			fmt.Sprintf("%s must be a map, not %s", name, a(e.Value.Kind)),
			fmt.Sprintf("Write %s: { ... } with its settings inside.", name)))
		return nil
	}
	return e.Value
}

// str returns the string value of e; name is the dotted setting name. The
// value is never quoted in a message: it may be a secret (a URL password).
func (l *loader) str(e *dconf.Entry, name string, dst *string) bool {
	if e == nil || broken(e.Value) {
		return false
	}
	if e.Value.Kind != dconf.String {
		l.add(errorf(CodeTypeMismatch, &e.Value.Range,
			fmt.Sprintf("%s must be a string, not %s", name, a(e.Value.Kind)),
			fmt.Sprintf("Write %s as a bare word or a quoted string.", name)))
		return false
	}
	*dst = e.Value.Str
	return true
}

func (c *Component) load(root *dconf.Value) hcl.Diagnostics {
	l := &loader{file: hcl.Range{Filename: c.File}}
	top := l.entries(root, "the component conf", componentKeys)

	var info ComponentInfo
	if e := top["component"]; e == nil {
		l.add(errorf(CodeComponentMissing, &l.file, "component is not set",
			"Add component: job_manager, package_manager or auth_server at the top of the file."))
	} else if l.str(e, "component", &c.Name) {
		var ok bool
		if info, ok = LookupComponent(c.Name); !ok {
			l.add(componentDiag(e))
			c.Name = ""
		}
	}
	if info.Name != "" {
		c.Short, c.Database, c.Service = info.Short, info.Database, info.Service
		c.Consul.Prefix, c.LogDir = info.Prefix, info.LogDir
	}

	db := l.sub(top["db"], "db")
	var dbe map[string]*dconf.Entry
	if db != nil {
		dbe = l.entries(db, "db", dbKeys)
	}
	c.loadDB(l, top["db"], dbe)

	if e := top["log_dir"]; l.str(e, "log_dir", &c.LogDir) && !path.IsAbs(c.LogDir) {
		l.add(errorf(CodePathInvalid, &e.Value.Range, "log_dir must be an absolute path",
			"The migration runs detached from Chef; write the full path, e.g. /var/log/continuum-job-manager-migration."))
	}
	return l.diags
}

func (c *Component) loadDB(l *loader, db *dconf.Entry, dbe map[string]*dconf.Entry) {
	kindOK := false
	switch e := dbe[keyKind]; {
	case e != nil:
		kind, d := checkKind(e, "db.kind")
		if d != nil {
			l.add(d)
		} else {
			c.Kind, c.kindRange, kindOK = kind, &e.Value.Range, true
		}
	case db != nil && db.Value.Kind == dconf.Map:
		l.add(errorf(CodeKindMissing, &db.KeyRange, "db.kind is not set",
			"Add kind: store3 (Consul KV) or kind: store2 (PostgreSQL) inside db."))
	case db == nil:
		l.add(errorf(CodeKindMissing, &l.file, "db.kind is not set",
			"Add db: { kind: store3 } (or store2)."))
	}
	if e := dbe[keyMigrate]; e != nil {
		b, ok, d := checkMigrate(e, "db.migrate_store2_to_store3")
		if d != nil {
			l.add(d)
		}
		if ok {
			c.Migrate, c.migrateRange = b, &e.Value.Range
		}
	}
	if kindOK && errors.Is(migrate.CheckSettings(c.Kind, c.Migrate), migrate.ErrStore2WithMigrate) {
		l.add(errorf(CodeStore2WithMigrate, c.migrateRange,
			"db.migrate_store2_to_store3 = true needs db.kind = store3",
			"Components refuse to start with kind = store2 and the migration flag on. Set kind: store3 to migrate, or remove migrate_store2_to_store3 to stay on store2.",
			dconf.Related{Range: *c.kindRange, Message: "kind is store2 here"}))
	}

	if pg := l.sub(dbe["postgres"], "db.postgres"); pg != nil {
		pe := l.entries(pg, "db.postgres", postgresKeys)
		l.str(pe["url"], "db.postgres.url", &c.Postgres.URL)
		if e := pe["table"]; l.str(e, "db.postgres.table", &c.Postgres.Table) {
			var te *migrate.TableError
			if _, err := migrate.ParseTable(c.Postgres.Table); errors.As(err, &te) {
				l.add(errorf(CodeTableInvalid, &e.Value.Range,
					fmt.Sprintf("db.postgres.table %q is not a table name: %s", c.Postgres.Table, te.Reason),
					`Write a table name as PostgreSQL reads it: store2_records, public.store2_records, or with double quotes for other characters or case, '"My Table"' or '"s"."t"'.`))
			}
		}
	}
	if cs := l.sub(dbe["consul"], "db.consul"); cs != nil {
		ce := l.entries(cs, "db.consul", consulKeys)
		l.str(ce["address"], "db.consul.address", &c.Consul.Address)
		l.str(ce["token_file"], "db.consul.token_file", &c.Consul.TokenFile)
		if e := ce["prefix"]; l.str(e, "db.consul.prefix", &c.Consul.Prefix) {
			var pe *migrate.PrefixError
			if errors.As(migrate.CheckPrefix(c.Consul.Prefix), &pe) {
				l.add(errorf(CodePrefixInvalid, &e.Value.Range,
					fmt.Sprintf("db.consul.prefix %q %s", c.Consul.Prefix, pe.Reason),
					"The migration deletes every key under the prefix before copying; a wrong prefix would wipe foreign data. Use the component's own prefix, e.g. apcera/store3/jmdb/."))
			}
		}
	}
}

func componentDiag(e *dconf.Entry) *hcl.Diagnostic {
	var names []string
	for _, ci := range Components {
		names = append(names, ci.Name)
	}
	s := e.Value.Str
	hint := suggest(s, names...)
	for _, ci := range Components {
		if n := normalize(s); n == ci.Short || n == normalize(ci.Service) || n == ci.Database {
			hint = ci.Name
		}
	}
	detail := "Write component: job_manager, package_manager or auth_server."
	if hint != "" {
		detail = fmt.Sprintf("Did you mean %s? Write component: %s.", hint, hint)
	}
	return errorf(CodeComponentInvalid, &e.Value.Range,
		fmt.Sprintf("component %q is not job_manager, package_manager or auth_server", s), detail)
}

// Override applies the command-line -db.kind and -db.migrate_store2_to_store3
// (nil when not given) over the file's settings and checks the result again.
// A diagnostic about a flag has no Subject and names the flag in its Summary;
// one about a flag combined with a setting of the file points at the file.
func (c *Component) Override(kind *string, mig *bool) hcl.Diagnostics {
	var diags hcl.Diagnostics
	kindFlag, migrateFlag := false, false
	if kind != nil {
		if migrate.CheckKind(*kind) == nil {
			c.Kind, kindFlag = *kind, true
		} else {
			diags = append(diags, kindDiag(dconf.String, *kind, nil, "-db.kind"))
			return diags
		}
	}
	if mig != nil {
		c.Migrate, migrateFlag = *mig, true
	}
	err := migrate.CheckSettings(c.Kind, c.Migrate)
	if errors.Is(err, migrate.ErrKindMissing) {
		diags = append(diags, errorf(CodeKindMissing, nil, "db.kind is not set: pass -db.kind",
			fmt.Sprintf("Neither %s nor the command line sets the store kind: add kind to db in the file or pass -db.kind store3 (or store2).", c.File)))
		return diags
	}
	if !errors.Is(err, migrate.ErrStore2WithMigrate) || !(kindFlag || migrateFlag) {
		return diags // a conflict of the file alone was reported by LoadComponent
	}
	var subject *hcl.Range
	var summary string
	switch {
	case kindFlag && migrateFlag:
		summary = "-db.kind=store2 with -db.migrate_store2_to_store3=true"
	case kindFlag:
		subject = c.migrateRange
		summary = "-db.kind=store2, but the file sets migrate_store2_to_store3 = true"
	default:
		subject = c.kindRange
		summary = "-db.migrate_store2_to_store3=true, but the file sets kind = store2"
	}
	diags = append(diags, errorf(CodeStore2WithMigrate, subject, summary,
		"Components refuse to start with kind = store2 and the migration flag on. Use kind store3 to migrate, or drop the migration flag to stay on store2."))
	return diags
}
