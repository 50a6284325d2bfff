package ikecmd

import (
	"bytes"
	"testing"

	"github.com/espy-dpi/espy/ike/ikeservice"
)

// TestPrintReload prints a reload's answer: a narrowing rekey, a delete
// after a refused rekey, and a delete of an SA routed elsewhere.
func TestPrintReload(t *testing.T) {
	r := &ikeservice.ReloadStatus{File: "/etc/espy/espy.yaml", Rules: 3, Checked: 4, LoadMillis: 0.6, CheckMillis: 3.14,
		Decisions: []ikeservice.ChildDecision{
			{Tunnel: "site-b", SPIIn: "c0010001", Action: ikeservice.DecisionRekey, Lost: []string{"upper"},
				LocalTS: []string{"198.51.100.0/24"}, RemoteTS: []string{"203.0.113.0/25"}, NewSPIIn: "c0030003"},
			{Tunnel: "site-c", SPIIn: "c0040004", Action: ikeservice.DecisionDelete, Lost: []string{"upper", "(no rule)"},
				Error: "ike: rekey refused: ike: peer sent TS_UNACCEPTABLE"},
			{Tunnel: "road", SPIIn: "c0050005", Action: ikeservice.DecisionDelete, Lost: []string{"elsewhere"}},
		}}
	var b bytes.Buffer
	printReload(&b, r)
	want := `policy reloaded from /etc/espy/espy.yaml: 3 rules (0.6 ms); 4 Child SAs checked, 3 changed (3.1 ms)
  site-b c0010001: rekey (lost to upper) -> c0030003, 198.51.100.0/24 === 203.0.113.0/25
  site-c c0040004: delete (lost to upper, (no rule)) error: ike: rekey refused: ike: peer sent TS_UNACCEPTABLE
  road c0050005: delete (lost to elsewhere)
`
	if b.String() != want {
		t.Errorf("got\n%s\nwant\n%s", b.String(), want)
	}
}
