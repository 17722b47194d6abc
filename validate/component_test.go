package validate

import (
	"fmt"
	"os"
	"testing"

	"github.com/apcera/deployhook/migrate"
	"github.com/apcera/deployhook/validate/dconf"
	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"
	"github.com/hashicorp/hcl/v2"
)

func load(t *testing.T, src string) *Component {
	t.Helper()
	c, diags := LoadComponent([]byte(src), "jm.conf")
	if diags.HasErrors() {
		t.Fatalf("LoadComponent: %v", diags)
	}
	return c
}

func TestLoadComponentValues(t *testing.T) {
	src, err := os.ReadFile("../fixtures/component/valid-job_manager.conf")
	if err != nil {
		t.Fatal(err)
	}
	got := load(t, string(src))
	want := &Component{Name: "job_manager", Kind: "store3", Migrate: true,
		LogDir: "/var/log/continuum-job-manager-migration", Database: "jmdb",
		Service: "continuum-job-manager", Short: "jm", File: "jm.conf"}
	want.Postgres.URL = "postgres://jm:jm-secret@10.0.0.5:5432/jmdb?sslmode=require"
	want.Postgres.Table = "store2_records"
	want.Consul.Address = "127.0.0.1:8500"
	want.Consul.Prefix = "apcera/store3/jmdb/"
	want.Consul.TokenFile = "/etc/deployhook/consul.token"
	if diff := cmp.Diff(want, got, cmpopts.IgnoreUnexported(Component{})); diff != "" {
		t.Errorf("(-want +got):\n%s", diff)
	}
}

func TestLoadComponentDefaults(t *testing.T) {
	for _, ci := range Components {
		got := load(t, "component: "+ci.Name+"\ndb: { kind: store2 }\n")
		want := &Component{Name: ci.Name, Kind: "store2", LogDir: ci.LogDir, Database: ci.Database,
			Service: ci.Service, Short: ci.Short, File: "jm.conf"}
		want.Postgres.Table = migrate.DefaultTable
		want.Consul.Prefix = ci.Prefix
		if diff := cmp.Diff(want, got, cmpopts.IgnoreUnexported(Component{})); diff != "" {
			t.Errorf("%s (-want +got):\n%s", ci.Name, diff)
		}
	}
}

func ptr[T any](v T) *T { return &v }

func TestOverride(t *testing.T) {
	for _, tc := range []struct {
		name     string
		src      string
		kind     *string
		migrate  *bool
		wantKind string
		wantMig  bool
		code     string // "" for no diagnostic
		subject  bool   // the diagnostic points into the file
	}{
		{"none", "db: { kind: store3 }", nil, nil, "store3", false, "", false},
		{"kind flag wins", "db: { kind: store2 }", ptr("store3"), nil, "store3", false, "", false},
		{"migrate flag wins", "db: { kind: store3, migrate_store2_to_store3: true }", nil, ptr(false), "store3", false, "", false},
		{"bad kind flag", "db: { kind: store3 }", ptr("stor3"), nil, "store3", false, CodeKindInvalid, false},
		{"both flags conflict", "db: { kind: store3 }", ptr("store2"), ptr(true), "store2", true, CodeStore2WithMigrate, false},
		{"kind flag vs file flag", "db: { kind: store3, migrate_store2_to_store3: true }", ptr("store2"), nil, "store2", true, CodeStore2WithMigrate, true},
		{"migrate flag vs file kind", "db: { kind: store2 }", nil, ptr(true), "store2", true, CodeStore2WithMigrate, true},
		{"fixes store2 conflict", "db: { kind: store2, migrate_store2_to_store3: false }", ptr("store3"), ptr(true), "store3", true, "", false},
		{"kind missing everywhere", "db: { migrate_store2_to_store3: true }", nil, nil, "", true, CodeKindMissing, false},
		{"kind from flag only", "db: { migrate_store2_to_store3: true }", ptr("store3"), nil, "store3", true, "", false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c, _ := LoadComponent([]byte("component: job_manager\n"+tc.src+"\n"), "jm.conf")
			diags := c.Override(tc.kind, tc.migrate)
			if c.Kind != tc.wantKind || c.Migrate != tc.wantMig {
				t.Errorf("kind %q migrate %v, want %q %v", c.Kind, c.Migrate, tc.wantKind, tc.wantMig)
			}
			var got string
			var d *hcl.Diagnostic
			if len(diags) > 0 {
				d = diags[0]
				got = dconf.CodeOf(d)
			}
			if got != tc.code || len(diags) > 1 {
				t.Fatalf("diagnostics %v, want code %q", diags, tc.code)
			}
			if d != nil && (d.Subject != nil) != tc.subject {
				t.Errorf("subject %v, want set=%v", d.Subject, tc.subject)
			}
		})
	}
}

// The component conf accepts exactly the table names and prefixes migrate
// accepts, and refuses the others with a diagnostic at the value.
func TestComponentAgreesWithMigrate(t *testing.T) {
	for _, tc := range []struct{ key, value string }{
		{"table", "store2_records"},
		{"table", "public.store2_records"},
		{"table", `'"My Table"'`},
		{"table", `'"s"."t"'`},
		{"table", `"\"a\"\"b\".x"`},
		{"table", "Store2_Records"},
		{"table", "a.b.c"},
		{"table", "select"},
		{"table", `"my table"`},
		{"table", `'""'`},
		{"table", "2019_records"},
		{"table", `"store2-records"`},
		{"prefix", "apcera/store3/jmdb/"},
		{"prefix", "apcera/"},
		{"prefix", "apcera/store3/jmdb"},
		{"prefix", `"apcera/st ore/"`},
		{"prefix", `"/"`},
	} {
		section := "postgres"
		if tc.key == "prefix" {
			section = "consul"
		}
		src := fmt.Sprintf("component: job_manager\ndb: {\n  kind: store3\n  %s: {\n    %s: %s\n  }\n}\n", section, tc.key, tc.value)
		c, diags := LoadComponent([]byte(src), "jm.conf")
		var got string
		var err error
		if tc.key == "table" {
			got = c.Postgres.Table
			_, err = migrate.ParseTable(got)
		} else {
			got = c.Consul.Prefix
			err = migrate.CheckPrefix(got)
		}
		code := map[string]string{"table": CodeTableInvalid, "prefix": CodePrefixInvalid}[tc.key]
		switch {
		case err == nil && diags.HasErrors():
			t.Errorf("%s %s: migrate accepts %q, validate refuses: %v", tc.key, tc.value, got, diags)
		case err != nil && (len(diags) != 1 || dconf.CodeOf(diags[0]) != code || diags[0].Subject == nil || diags[0].Subject.Start.Line != 5):
			t.Errorf("%s %s: migrate refuses %q (%v), validate says %v; want one %s at line 5", tc.key, tc.value, got, err, diags, code)
		}
	}
}

// LoadComponent and Override refuse exactly the settings migrate refuses.
func TestComponentSettingsAgreeWithMigrate(t *testing.T) {
	for _, kind := range []string{"store2", "store3", "Store3", "consul"} {
		for _, mig := range []bool{false, true} {
			src := fmt.Sprintf("component: job_manager\ndb: { kind: %s, migrate_store2_to_store3: %t }\n", kind, mig)
			_, diags := LoadComponent([]byte(src), "jm.conf")
			want := migrate.CheckSettings(kind, mig)
			if (want != nil) != diags.HasErrors() {
				t.Errorf("kind %s migrate %t: migrate says %v, LoadComponent %v", kind, mig, want, diags)
			}
			c, _ := LoadComponent([]byte("component: job_manager\n"), "jm.conf")
			if got := c.Override(&kind, &mig); (want != nil) != got.HasErrors() {
				t.Errorf("-db.kind %s -db.migrate_store2_to_store3=%t: migrate says %v, Override %v", kind, mig, want, got)
			}
		}
	}
}
