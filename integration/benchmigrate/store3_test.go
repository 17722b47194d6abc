package main

import "testing"

// The records ceiling is the migration's work only if its keys are as long
// as the migration's.
func TestCeilingRecordsPrefixIsAsLongAsTheMigrations(t *testing.T) {
	if len(ceilRecordsPre) != len(prefix) {
		t.Fatalf("len(%q) = %d, len(%q) = %d: the records ceiling would write keys of another length", ceilRecordsPre, len(ceilRecordsPre), prefix, len(prefix))
	}
}
