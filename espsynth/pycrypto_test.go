package espsynth_test

import (
	"bytes"
	"context"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"os/exec"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/espy-dpi/espy/espsynth"
)

// pyVerify opens AEAD-protected ESP packets with python-cryptography (an
// OpenSSL-backed implementation, independent of Go's) and prints "ok N".
// Input: one JSON object per line with the cipher, key, salt and packet.
const pyVerify = `
import json, sys
from cryptography.hazmat.primitives.ciphers.aead import AESGCM, ChaCha20Poly1305
n = 0
for line in sys.stdin:
    p = json.loads(line)
    esp, key, salt = (bytes.fromhex(p[k]) for k in ("esp", "key", "salt"))
    iv = esp[8:16]
    nonce = salt + iv
    if p["cipher"] == "ENCR_NULL_AUTH_AES_GMAC":
        # RFC 4543: AAD is the whole packet up to the ICV, plaintext empty.
        AESGCM(key).decrypt(nonce, esp[-16:], esp[:-16])
    elif p["cipher"] == "CHACHA20-POLY1305":
        pt = ChaCha20Poly1305(key).decrypt(nonce, esp[16:], esp[:8])
        assert pt[-1] == p["nh"], (pt[-1], p["nh"])
    elif p["cipher"] == "AES-GCM":
        pt = AESGCM(key).decrypt(nonce, esp[16:], esp[:8])
        assert pt[-1] == p["nh"], (pt[-1], p["nh"])
    else:
        raise SystemExit("unexpected cipher " + p["cipher"])
    n += 1
print("ok", n)
`

// TestPythonCryptographyOpensAEAD checks the transforms tshark cannot
// (ChaCha20-Poly1305, ENCR_NULL_AUTH_AES_GMAC) and AES-GCM-16 with an AEAD
// implementation other than the one that sealed them.
func TestPythonCryptographyOpensAEAD(t *testing.T) {
	py, err := exec.LookPath("python3")
	if err != nil {
		t.Skip("python3 not installed")
	}
	if exec.Command(py, "-c", "import cryptography.hazmat.primitives.ciphers.aead").Run() != nil {
		t.Skip("python3 has no cryptography package")
	}
	var flows []espsynth.Flow
	for i, c := range []espsynth.Cipher{espsynth.CipherChaCha20Poly1305, espsynth.CipherNullAuthAESGMAC, espsynth.CipherAESGCM} {
		for _, mode := range []espsynth.Mode{espsynth.Transport, espsynth.Tunnel} {
			flows = append(flows, espsynth.Flow{
				Outer: []espsynth.IPVersion{espsynth.IPv4, espsynth.IPv6}[i%2], Encap: espsynth.Encap(i % 2),
				Mode: mode, Inner: espsynth.IPv6, Cipher: c, Traffic: espsynth.TrafficMixed,
				Padding: espsynth.PaddingExtra, Packets: 20,
			})
		}
	}
	c := generate(t, 12, espsynth.Config{Flows: flows})
	var in bytes.Buffer
	n := 0
	for i, frame := range c.frames {
		e := findESP(t, frame)
		sa := c.sas[flowKey{e.src, e.dst, binary.BigEndian.Uint32(e.esp)}]
		pt, err := openESP(sa, e.esp)
		if err != nil {
			t.Fatalf("frame %d: %v", i, err)
		}
		b, _ := json.Marshal(map[string]any{
			"cipher": sa.Cipher.String(), "esp": hex.EncodeToString(e.esp),
			"key": hex.EncodeToString(sa.EncKey), "salt": hex.EncodeToString(sa.Salt), "nh": pt[len(pt)-1],
		})
		in.Write(append(b, '\n'))
		n++
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, py, "-c", pyVerify)
	cmd.Stdin = &in
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("python-cryptography rejected a packet: %v\n%s", err, out)
	}
	if got, want := strings.TrimSpace(string(out)), "ok "+strconv.Itoa(n); got != want {
		t.Fatalf("python says %q, want %q", got, want)
	}
}
