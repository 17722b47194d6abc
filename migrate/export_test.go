package migrate

// SetMaxDiffKeys sets maxDiffKeys for a test and returns the restore.
func SetMaxDiffKeys(n int64) (restore func()) {
	old := maxDiffKeys
	maxDiffKeys = n
	return func() { maxDiffKeys = old }
}

// SetMaxListRecords sets maxListRecords for a test and returns the restore.
func SetMaxListRecords(n int64) (restore func()) {
	old := maxListRecords
	maxListRecords = n
	return func() { maxListRecords = old }
}
