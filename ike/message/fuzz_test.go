package message

import (
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"testing"
)

// FuzzDecode feeds arbitrary datagrams to the decoder. Whatever decodes must
// re-encode to something that decodes to the same message, and the chain
// inside an SK payload is decoded as plaintext too, as it would be after
// decryption.
func FuzzDecode(f *testing.F) {
	for _, m := range []*Message{initRequest(), authRequest(f)} {
		b, err := m.Encode(nil)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		m, err := Decode(b)
		if err != nil {
			return
		}
		again, err := m.Encode(nil)
		if err != nil {
			t.Fatalf("re-encode: %v", err)
		}
		m2, err := Decode(again)
		if err != nil {
			t.Fatalf("decode of re-encoding: %v", err)
		}
		m.Header.Length = m2.Header.Length
		// Skipped unknown payloads change the first Next Payload.
		m.Header.NextPayload = m2.Header.NextPayload
		if !reflect.DeepEqual(m, m2) {
			t.Fatalf("re-encoding changed the message:\n%#v\n%#v", m, m2)
		}
		if sk, ok := Get(m.Payloads, PayloadSK).(*SK); ok {
			_, _ = DecodePayloads(sk.NextPayload, sk.Data)
		}
	})
}

// TestWriteSeedCorpus regenerates testdata/fuzz/FuzzDecode from the
// hand-built messages of the tests when run with -update.
func TestWriteSeedCorpus(t *testing.T) {
	if !*update {
		t.Skip("run with -update to rewrite the seed corpus")
	}
	dir := filepath.Join("testdata", "fuzz", "FuzzDecode")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	seeds := map[string][]byte{}
	for name, m := range map[string]*Message{"ike_sa_init": initRequest(), "ike_auth": authRequest(t)} {
		b, err := m.Encode(nil)
		if err != nil {
			t.Fatal(err)
		}
		seeds[name] = b
	}
	// The plaintext chain of IKE_AUTH as a message of its own, so the
	// fuzzer mutates every payload type without an SK wrapper.
	inner, first, err := AppendPayloads(nil, authPlain())
	if err != nil {
		t.Fatal(err)
	}
	seeds["ike_auth_plain"] = withPayload(first, inner)
	seeds["critical"] = withPayload(200, []byte{byte(PayloadNone), 0x80, 0, 8, 1, 2, 3, 4})
	seeds["skf"] = withPayload(PayloadSKF, []byte{byte(PayloadNone), 0, 0, 12, 0, 1, 0, 2, 1, 2, 3, 4})
	for name, b := range seeds {
		body := fmt.Sprintf("go test fuzz v1\n[]byte(%q)\n", b)
		if err := os.WriteFile(filepath.Join(dir, name), []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
	}
}
