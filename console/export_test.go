package console

// SetCallsPageSize sets the Calls page's size until the returned func runs.
func SetCallsPageSize(n int) (restore func()) {
	old := callsPageSize
	callsPageSize = n
	return func() { callsPageSize = old }
}
