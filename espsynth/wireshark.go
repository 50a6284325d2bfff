package espsynth

import (
	"encoding/hex"
	"fmt"
	"io"
)

// wiresharkCipher names the ciphers Wireshark's ESP dissector can decrypt,
// as its esp_sa table spells them. ChaCha20-Poly1305 and
// ENCR_NULL_AUTH_AES_GMAC are missing: Wireshark 4.0 has neither.
var wiresharkCipher = map[Cipher]string{
	CipherNULL:   "NULL",
	Cipher3DES:   "TripleDES-CBC [RFC2451]",
	CipherAESCBC: "AES-CBC [RFC3602]",
	CipherAESCTR: "AES-CTR [RFC3686]",
}

// wiresharkAuth names the integrity algorithms as the esp_sa table does.
var wiresharkAuth = map[Auth]string{
	AuthNone:       "NULL",
	AuthHMACSHA1:   "HMAC-SHA-1-96 [RFC2404]",
	AuthHMACSHA256: "HMAC-SHA-256-128 [RFC4868]",
	AuthHMACSHA384: "HMAC-SHA-384-192 [RFC4868]",
	AuthHMACSHA512: "HMAC-SHA-512-256 [RFC4868]",
}

// WiresharkESPSA returns the SA as a line of Wireshark's esp_sa table
// (the "ESP SAs" preference), so Wireshark and tshark can decrypt the flow
// and check its ICV. ok is false for transforms Wireshark cannot handle.
func (sa *SA) WiresharkESPSA() (line string, ok bool) {
	enc, ok := wiresharkCipher[sa.Cipher]
	if sa.Cipher == CipherAESGCM {
		enc, ok = fmt.Sprintf("AES-GCM with %d octet ICV [RFC4106]", sa.ICVLen), true
	}
	if !ok {
		return "", false
	}
	proto := "IPv4"
	if sa.Src.Is6() {
		proto = "IPv6"
	}
	// Wireshark takes the salt (or CTR nonce) as the tail of the key, the
	// way IKEv2 derives it (RFC 3686 section 5.1, RFC 4106 section 8.1).
	key := append(append([]byte(nil), sa.EncKey...), sa.Salt...)
	return fmt.Sprintf(`"%s","%s","%s","0x%08x","%s","0x%s","%s","0x%s"`,
		proto, sa.Src, sa.Dst, sa.SPI, enc, hex.EncodeToString(key),
		wiresharkAuth[sa.Auth], hex.EncodeToString(sa.AuthKey)), true
}

// WriteWiresharkESPSA writes the esp_sa table lines of the SAs Wireshark
// can decrypt, and returns how many SAs it had to leave out. Copy the
// output to ~/.config/wireshark/esp_sa and enable the ESP preferences
// esp.enable_encryption_decode and esp.enable_authentication_check.
func WriteWiresharkESPSA(w io.Writer, sas []SA) (skipped int, err error) {
	for i := range sas {
		line, ok := sas[i].WiresharkESPSA()
		if !ok {
			skipped++
			continue
		}
		if _, err := io.WriteString(w, line+"\n"); err != nil {
			return skipped, fmt.Errorf("espsynth: writing esp_sa table: %w", err)
		}
	}
	return skipped, nil
}
