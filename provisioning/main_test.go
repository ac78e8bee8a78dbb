package provisioning

import (
	"os"
	"testing"
)

// TestMain removes the store the scale benchmarks share (scale_bench_test.go).
func TestMain(m *testing.M) {
	code := m.Run()
	closeScaleFixture()
	os.Exit(code)
}
