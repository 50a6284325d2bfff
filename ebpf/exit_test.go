package ebpf

import (
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

var update = flag.Bool("update", false, "rewrite golden files")

// TestExitReasonNames pins the metric names and numbers of the exit reasons:
// dashboards and SIEM rules key on them, so a change must be deliberate
// (go test -run TestExitReasonNames -update).
func TestExitReasonNames(t *testing.T) {
	var b strings.Builder
	seen := map[string]bool{}
	for r := range ExitReason(NumExitReasons) {
		name := r.String()
		if seen[name] || strings.HasPrefix(name, "exit(") {
			t.Errorf("reason %d: name %q missing or duplicate", r, name)
		}
		seen[name] = true
		fmt.Fprintf(&b, "%d %s\n", r, name)
	}
	golden := filepath.Join("testdata", "exit_reasons.golden")
	if *update {
		if err := os.WriteFile(golden, []byte(b.String()), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(golden)
	if err != nil {
		t.Fatal(err)
	}
	if b.String() != string(want) {
		t.Errorf("exit reasons changed:\n got:\n%s\nwant:\n%s", b.String(), want)
	}
	if got := ExitReason(NumExitReasons).String(); got != fmt.Sprintf("exit(%d)", NumExitReasons) {
		t.Errorf("out of range reason: %q", got)
	}
}
