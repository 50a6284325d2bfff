package ike

import (
	"encoding/binary"
	"fmt"
	"os"
	"path/filepath"
	"testing"

	"github.com/espy-dpi/espy/ike/message"
)

// fuzzLiveSPI in a REKEY_SA notify of FuzzCreateChild stands for the SPI
// of the responder's live Child SA, so that rekeys are reachable.
const fuzzLiveSPI = 0xffffffff

// createChildSeeds are CREATE_CHILD_SA request payloads for the seed
// corpus: a new Child SA with and without PFS, a rekey, a transport-mode
// request, an IKE SA proposal, and malformed ones.
func createChildSeeds() map[string][]message.Payload {
	spi := binary.BigEndian.AppendUint32(nil, 0x01020304)
	esp := func(s string) *message.SA {
		return saPayload([]Proposal{MustParseProposal(s, false)}, message.ProtoESP, spi)
	}
	x25519 := &message.KE{Group: message.DH_CURVE25519, Data: make([]byte, 32)}
	x25519.Data[0] = 9
	nonce := &message.Nonce{Data: make([]byte, 32)}
	ts := []message.Payload{
		&message.TS{Initiator: true, Selectors: prefixTS("198.51.100.0/24")},
		&message.TS{Selectors: prefixTS("203.0.113.0/24")},
	}
	return map[string][]message.Payload{
		"new":           append([]message.Payload{esp("null-sha256"), nonce}, ts...),
		"new_pfs":       append([]message.Payload{esp("aes128gcm16-x25519"), nonce, x25519}, ts...),
		"rekey":         append([]message.Payload{&message.Notify{Protocol: message.ProtoESP, SPI: binary.BigEndian.AppendUint32(nil, fuzzLiveSPI), Kind: message.REKEY_SA}, esp("null-sha256"), nonce}, ts...),
		"transport":     append([]message.Payload{&message.Notify{Kind: message.USE_TRANSPORT_MODE}, esp("null-sha256"), nonce}, ts...),
		"ike_proposal":  {saPayload([]Proposal{MustParseProposal("aes128gcm16-prfsha256-x25519", true)}, message.ProtoIKE, make([]byte, 8)), nonce, x25519},
		"no_selectors":  {esp("null-sha256"), nonce},
		"only_a_nonce":  {nonce},
		"short_rekeyid": append([]message.Payload{&message.Notify{Protocol: message.ProtoESP, SPI: []byte{1}, Kind: message.REKEY_SA}, esp("null-sha256"), nonce}, ts...),
	}
}

// TestCreateChildCorpus checks that testdata/fuzz/FuzzCreateChild holds the
// seeds createChildSeeds builds; with ESPY_WRITE_CORPUS=1 it writes them.
func TestCreateChildCorpus(t *testing.T) {
	dir := filepath.Join("testdata", "fuzz", "FuzzCreateChild")
	for name, ps := range createChildSeeds() {
		b, first, err := message.AppendPayloads(nil, ps)
		if err != nil {
			t.Fatal(err)
		}
		want := fmt.Sprintf("go test fuzz v1\nbyte(%q)\n[]byte(%q)\n", byte(first), b)
		path := filepath.Join(dir, name)
		if os.Getenv("ESPY_WRITE_CORPUS") != "" {
			if err := os.MkdirAll(dir, 0o755); err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(path, []byte(want), 0o644); err != nil {
				t.Fatal(err)
			}
		}
		got, err := os.ReadFile(path)
		if err != nil || string(got) != want {
			t.Fatalf("%s: seed corpus out of date (ESPY_WRITE_CORPUS=1 go test -run TestCreateChildCorpus ./ike): %v", path, err)
		}
	}
}

// FuzzCreateChild hands arbitrary decrypted CREATE_CHILD_SA payloads to
// the responder of an established IKE SA (with a second Child SA
// configuration). Nothing may panic; the answer is one error notify and
// no new Child SA, or a full answer (SA, Nonce, TSi, TSr) with exactly one
// new Child SA registered in both directions. New Child SAs are dropped
// again after each input, so state stays bounded.
func FuzzCreateChild(f *testing.F) {
	// The seeds are in testdata/fuzz/FuzzCreateChild (TestCreateChildCorpus).
	ini, resp := listen(f, ListenConfig{}), listen(f, ListenConfig{})
	ireg, rreg := &recorder{}, &recorder{}
	icfg, rcfg := configs("aes128gcm16-prfsha256-x25519", "null-sha256", ireg, rreg)
	rcfg.ESP = append(rcfg.ESP, MustParseProposal("aes128gcm16-x25519", false))
	rcfg.Children = []ChildConfig{{ESP: []Proposal{MustParseProposal("aes128gcm16-x25519", false)},
		LocalTS: prefixTS("203.0.113.0/24"), RemoteTS: prefixTS("198.51.100.0/24"), Mode: ModeTransport}}
	if err := resp.Respond(rcfg); err != nil {
		f.Fatal(err)
	}
	_, natt := resp.Addrs()
	icfg.RemoteNATPort = natt.Port()
	rike, _ := resp.Addrs()
	isa, err := ini.Initiate(f.Context(), icfg, rike)
	if err != nil {
		f.Fatal(err)
	}
	spiI, _ := isa.SPIs()
	var rsa *IKESA
	for _, sa := range resp.IKESAs() {
		if a, _ := sa.SPIs(); a == spiI {
			rsa = sa
		}
	}
	if rsa == nil {
		f.Fatal("no responder IKE SA")
	}
	live := rsa.Children()[0]
	f.Fuzz(func(t *testing.T, first byte, data []byte) {
		ps, err := message.DecodePayloads(message.PayloadType(first), data)
		if err != nil {
			return
		}
		for _, n := range message.Notifies(ps) {
			if n.Kind == message.REKEY_SA && len(n.SPI) == 4 && binary.BigEndian.Uint32(n.SPI) == fuzzLiveSPI {
				n.SPI = binary.BigEndian.AppendUint32(nil, live.OutSPI)
			}
		}
		rsa.mu.Lock()
		defer rsa.mu.Unlock()
		before := len(rsa.children)
		out := rsa.rekeyAnswerLocked(ps)
		added := len(rsa.children) - before
		if n, ok := out[0].(*message.Notify); ok && len(out) == 1 && n.Kind.IsError() {
			if added != 0 {
				t.Fatalf("refused with %v but %d Child SAs added", n.Kind, added)
			}
		} else {
			if added != 1 || message.Get(out, message.PayloadSA) == nil || message.Get(out, message.PayloadNonce) == nil ||
				message.Get(out, message.PayloadTSi) == nil || message.Get(out, message.PayloadTSr) == nil {
				t.Fatalf("answer %v with %d Child SAs added", out, added)
			}
		}
		if rreg.len() != 2*len(rsa.children) {
			t.Fatalf("%d registrations for %d Child SAs", rreg.len(), len(rsa.children))
		}
		for _, c := range rsa.children[before:] {
			rsa.dropChildLocked(c)
		}
		live.rk = rekeyState{}
	})
}
