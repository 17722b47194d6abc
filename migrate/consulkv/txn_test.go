package consulkv

import (
	"testing"

	"github.com/hashicorp/consul/api"

	"github.com/apcera/deployhook/migrate"
)

// TestVerbsAreConsulsVerbs holds the migration's verbs to Consul's
// spelling, since migrate.AppendTxn writes them as they are.
func TestVerbsAreConsulsVerbs(t *testing.T) {
	for v, want := range map[migrate.Verb]api.KVOp{
		migrate.VerbSet:            api.KVSet,
		migrate.VerbDelete:         api.KVDelete,
		migrate.VerbDeleteTree:     api.KVDeleteTree,
		migrate.VerbCheckNotExists: api.KVCheckNotExists,
		migrate.VerbCheckIndex:     api.KVCheckIndex,
	} {
		if string(v) != string(want) || !knownVerb(v) {
			t.Errorf("verb %q: Consul spells it %q; known: %v", v, want, knownVerb(v))
		}
	}
	if knownVerb(migrate.Verb(api.KVCAS)) {
		t.Errorf("verb %q is not the migration's, yet known", api.KVCAS)
	}
}
