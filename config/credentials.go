package config

import (
	"crypto"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"

	"github.com/espy-dpi/espy/ike"
)

// Credentials are a tunnel's secrets and certificates, loaded from the
// files and environment variable its auth: section names.
type Credentials struct {
	PSK          []byte
	Certificates []*x509.Certificate // leaf first
	PrivateKey   crypto.Signer
	RootCAs      []*x509.Certificate
	// Chains are the further chains of auth.chains.
	Chains []ike.CertChain
	// SignatureAuth and AllowSHA1Auth say how the certificates sign and
	// which peer signatures are accepted (ike.Config's fields).
	SignatureAuth ike.SignatureAuth
	AllowSHA1Auth bool
}

// maxCredentialFile bounds what is read from a key or certificate file,
// so that a path such as /dev/zero fails instead of filling memory.
const maxCredentialFile = 1 << 20

// Credentials loads the credentials of tunnels[i]. Errors name the file and
// line of the key that points to the faulty file, never a secret.
func (c *Config) Credentials(i int) (Credentials, error) {
	a := c.Tunnels[i].Auth
	p := "tunnels." + strconv.Itoa(i) + ".auth"
	var cr Credentials
	switch {
	case a.PSKFile != "":
		b, err := readLimited(a.PSKFile)
		if err != nil {
			return cr, c.fail(p+".psk_file", "pre-shared key: %v", err)
		}
		cr.PSK = []byte(strings.TrimRight(string(b), "\r\n"))
		if len(cr.PSK) == 0 {
			return cr, c.fail(p+".psk_file", "pre-shared key file %s is empty", a.PSKFile)
		}
	case a.PSKEnv != "":
		v, ok := os.LookupEnv(a.PSKEnv)
		if !ok || v == "" {
			return cr, c.fail(p+".psk_env", "environment variable %s is not set or empty", a.PSKEnv)
		}
		cr.PSK = []byte(v)
	}
	if a.Cert != "" {
		certs, err := ReadCertificates(a.Cert)
		if err != nil {
			return cr, c.fail(p+".cert", "%v", err)
		}
		cr.Certificates = certs
		if cr.PrivateKey, err = ReadPrivateKey(a.Key); err != nil {
			return cr, c.fail(p+".key", "%v", err)
		}
	}
	for j, ch := range a.Chains {
		q := p + ".chains." + strconv.Itoa(j)
		certs, err := ReadCertificates(ch.Cert)
		if err != nil {
			return cr, c.fail(q+".cert", "%v", err)
		}
		key, err := ReadPrivateKey(ch.Key)
		if err != nil {
			return cr, c.fail(q+".key", "%v", err)
		}
		cr.Chains = append(cr.Chains, ike.CertChain{Certificates: certs, PrivateKey: key})
	}
	cr.SignatureAuth, cr.AllowSHA1Auth = signatureAuths[a.SignatureAuth], a.AllowSHA1
	if a.CA != "" {
		cas, err := ReadCertificates(a.CA)
		if err != nil {
			return cr, c.fail(p+".ca", "%v", err)
		}
		cr.RootCAs = cas
	}
	return cr, nil
}

func readLimited(path string) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	b, err := io.ReadAll(io.LimitReader(f, maxCredentialFile+1))
	if err != nil {
		return nil, fmt.Errorf("read %s: %w", path, err)
	}
	if len(b) > maxCredentialFile {
		return nil, fmt.Errorf("%s is larger than %d bytes", path, maxCredentialFile)
	}
	return b, nil
}

// ReadCertificates reads every CERTIFICATE block of a PEM file (at most
// 1 MiB), in file order.
func ReadCertificates(path string) ([]*x509.Certificate, error) {
	b, err := readLimited(path)
	if err != nil {
		return nil, err
	}
	var out []*x509.Certificate
	for blk, rest := pem.Decode(b); blk != nil; blk, rest = pem.Decode(rest) {
		if blk.Type != "CERTIFICATE" {
			continue
		}
		cert, err := x509.ParseCertificate(blk.Bytes)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", path, err)
		}
		out = append(out, cert)
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("no PEM certificate in %s", path)
	}
	return out, nil
}

// ReadPrivateKey reads the first PEM block of a file (at most 1 MiB) as a
// private key: PKCS#8, SEC 1 or PKCS#1.
func ReadPrivateKey(path string) (crypto.Signer, error) {
	b, err := readLimited(path)
	if err != nil {
		return nil, err
	}
	blk, _ := pem.Decode(b)
	if blk == nil {
		return nil, fmt.Errorf("no PEM block in %s", path)
	}
	var key any
	switch blk.Type {
	case "EC PRIVATE KEY":
		key, err = x509.ParseECPrivateKey(blk.Bytes)
	case "RSA PRIVATE KEY":
		key, err = x509.ParsePKCS1PrivateKey(blk.Bytes)
	case "PRIVATE KEY":
		key, err = x509.ParsePKCS8PrivateKey(blk.Bytes)
	default:
		return nil, fmt.Errorf("%s: PEM block %q is not a private key", path, blk.Type)
	}
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	s, ok := key.(crypto.Signer)
	if !ok {
		return nil, errors.New(path + ": key cannot sign")
	}
	return s, nil
}
