package ikecmd

import (
	"bytes"
	"flag"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/espy-dpi/espy/ike/ikeservice"
)

var updateGolden = flag.Bool("update-golden", false, "rewrite testdata/*.golden")

func TestControlForm(t *testing.T) {
	for _, tt := range []struct {
		args    []string
		control bool
	}{
		{[]string{"site-b"}, true},
		{[]string{"--socket", "/tmp/x.sock", "site-b"}, true},
		{[]string{"-socket=/tmp/x.sock", "site-b"}, true},
		{[]string{"site-b", "--socket", "/tmp/x.sock"}, true},
		{[]string{"192.0.2.2"}, false},                               // a peer address: standalone
		{[]string{"2001:db8::2"}, false},                             // also IPv6
		{[]string{"-local-id", "a.lab.example", "192.0.2.2"}, false}, // flags of the standalone form
		{[]string{"-listen", "192.0.2.1", "peer"}, false},
		{[]string{}, false},
		{[]string{"a", "b"}, false},
		{[]string{"-h"}, false},
	} {
		if got := controlForm(tt.args); got != tt.control {
			t.Errorf("%q: control form %v, want %v", tt.args, got, tt.control)
		}
	}
}

// TestPrintStatusGolden prints a status with the data plane fields and one
// of a server older than them, which must print as it always did.
func TestPrintStatusGolden(t *testing.T) {
	at := time.Date(2026, 11, 27, 12, 0, 0, 0, time.UTC)
	pk, by := uint64(42), uint64(5040)
	status := func(dp bool) *ikeservice.Status {
		child := ikeservice.ChildSAStatus{SPIIn: "c0010001", SPIOut: "c0020002", Encr: "null", Integ: "hmac-sha2-256-128",
			Null: true, Mode: "tunnel", Encap: "none", LocalTS: []string{"198.51.100.0/24"}, RemoteTS: []string{"203.0.113.0/24"},
			PacketsIn: &pk, BytesIn: &by}
		st := &ikeservice.Status{
			Listen: []ikeservice.Listener{{IKE: "192.0.2.1:500", NATT: "192.0.2.1:4500"}},
			Tunnels: []ikeservice.TunnelStatus{
				{Name: "site-b", StartAction: "start", Remote: "192.0.2.2:500", State: "established", IKESAs: []ikeservice.IKESAStatus{{
					Local: "192.0.2.1:500", Remote: "192.0.2.2:500", PeerID: "b.lab.example", Initiator: true,
					SPIi: "0123456789abcdef", SPIr: "fedcba9876543210", Encr: "aes-gcm-16-128", PRF: "hmac-sha2-256", DH: "curve25519",
					Established: at.Add(-90 * time.Second),
					ChildSAs:    []ikeservice.ChildSAStatus{child},
				}}},
				{Name: "road", StartAction: "respond", State: "down", LastError: "ike: timeout", IKESAs: []ikeservice.IKESAStatus{}},
			},
		}
		if dp {
			st.DataPlane = &ikeservice.DataPlaneStatus{Kind: "tun", Device: "espy0", MTU: 1379,
				Reason: "ike.dataplane auto: kernel without ESP (CONFIG_INET_ESP)", NoSA: 3}
			sa := &st.Tunnels[0].IKESAs[0]
			sa.ChildSAs[0].DataPlane = &ikeservice.ChildDataPlaneStatus{PacketsIn: 42, BytesIn: 3528, PacketsOut: 40, BytesOut: 3360,
				AuthFailures: 1, ReplayDrops: 2, Installed: true, Active: true}
			// A rekey's new pair, not yet used by this responder.
			rekeyed := child
			rekeyed.SPIIn, rekeyed.SPIOut, rekeyed.PacketsIn, rekeyed.BytesIn = "c0010003", "c0020004", nil, nil
			rekeyed.DataPlane = &ikeservice.ChildDataPlaneStatus{Installed: true}
			sa.ChildSAs = append(sa.ChildSAs, rekeyed)
		}
		return st
	}
	for _, tt := range []struct {
		golden string
		st     *ikeservice.Status
	}{
		{"status.golden", status(true)},
		{"status-v1.golden", status(false)}, // a server without the dataplane fields
	} {
		var b bytes.Buffer
		printStatus(&b, tt.st, at)
		golden := filepath.Join("testdata", tt.golden)
		if *updateGolden {
			os.MkdirAll("testdata", 0o755)
			if err := os.WriteFile(golden, b.Bytes(), 0o644); err != nil {
				t.Fatal(err)
			}
		}
		want, err := os.ReadFile(golden)
		if err != nil {
			t.Fatalf("%v (run with -update-golden)", err)
		}
		if !bytes.Equal(b.Bytes(), want) {
			t.Errorf("%s: status output:\n%s\nwant:\n%s", tt.golden, b.Bytes(), want)
		}
	}
}
