package message

import (
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
)

// readCorpusFile returns the []byte value of a go-fuzz corpus file.
func readCorpusFile(t *testing.T, path string) []byte {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(string(b), "\n")
	if len(lines) < 2 || !strings.HasPrefix(lines[1], "[]byte(") {
		t.Fatalf("%s: not a []byte corpus entry", path)
	}
	s, err := strconv.Unquote(strings.TrimSuffix(strings.TrimPrefix(lines[1], "[]byte("), ")"))
	if err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	return []byte(s)
}

// TestStrongSwanMessages decodes messages captured between charon 5.9.8
// (initiator) and espy (responder) in the interop test's namespaces; they
// also seed FuzzDecode.
func TestStrongSwanMessages(t *testing.T) {
	tests := []struct {
		file string
		exch ExchangeType
		want []PayloadType // leading payload types
	}{
		{"strongswan_charon_init_req_ecp384", IKE_SA_INIT, []PayloadType{PayloadSA, PayloadKE, PayloadNonce, PayloadNotify}},
		{"strongswan_charon_init_req_x25519", IKE_SA_INIT, []PayloadType{PayloadSA, PayloadKE, PayloadNonce}},
		{"strongswan_espy_invalid_ke", IKE_SA_INIT, []PayloadType{PayloadNotify}},
		{"strongswan_espy_init_resp", IKE_SA_INIT, []PayloadType{PayloadSA, PayloadKE, PayloadNonce}},
		{"strongswan_charon_auth_req", IKE_AUTH, []PayloadType{PayloadSK}},
		{"strongswan_charon_delete_req", INFORMATIONAL, []PayloadType{PayloadSK}},
	}
	for _, tt := range tests {
		t.Run(tt.file, func(t *testing.T) {
			m, err := Decode(readCorpusFile(t, filepath.Join("testdata", "fuzz", "FuzzDecode", tt.file)))
			if err != nil {
				t.Fatal(err)
			}
			if m.Exchange != tt.exch || len(m.Payloads) < len(tt.want) {
				t.Fatalf("%v with %d payloads", m.Exchange, len(m.Payloads))
			}
			for i, w := range tt.want {
				if got := m.Payloads[i].Type(); got != w {
					t.Fatalf("payload %d is %v, want %v", i, got, w)
				}
			}
		})
	}
}
