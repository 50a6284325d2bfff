package inline

import (
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/espy-dpi/espy/flowcache"
	"github.com/espy-dpi/espy/verdictlog"
)

// TestOutputReopen is what logrotate does: move the log away, send SIGHUP
// (Reopen), and the next records go to a new file at the old path.
func TestOutputReopen(t *testing.T) {
	dir := t.TempDir()
	name := filepath.Join(dir, "verdicts.jsonl")
	o, err := OpenOutput(name, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer o.Close()
	r := &verdictlog.Record{Action: verdictlog.ActionVerdict, Time: time.Unix(0, 0),
		Key:  flowcache.NewKey(netip.MustParseAddr("192.0.2.1"), netip.MustParseAddr("192.0.2.2"), 0x1000),
		Flow: &flowcache.Flow{}}
	if err := o.Write(r); err != nil {
		t.Fatal(err)
	}
	rotated := name + ".1"
	if err := os.Rename(name, rotated); err != nil {
		t.Fatal(err)
	}
	if err := o.Reopen(); err != nil {
		t.Fatal(err)
	}
	if err := o.Write(r); err != nil {
		t.Fatal(err)
	}
	for _, f := range []string{rotated, name} {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		if n := strings.Count(string(b), "\n"); n != 1 {
			t.Errorf("%s has %d records, want 1", f, n)
		}
	}
}
