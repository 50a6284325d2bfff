package message

import "strconv"

// PayloadType is the "Next Payload" code of RFC 7296 section 3.2 (IANA
// "IKEv2 Payload Types").
type PayloadType uint8

// Payload types.
const (
	PayloadNone    PayloadType = 0
	PayloadSA      PayloadType = 33
	PayloadKE      PayloadType = 34
	PayloadIDi     PayloadType = 35
	PayloadIDr     PayloadType = 36
	PayloadCERT    PayloadType = 37
	PayloadCERTREQ PayloadType = 38
	PayloadAUTH    PayloadType = 39
	PayloadNonce   PayloadType = 40
	PayloadNotify  PayloadType = 41
	PayloadDelete  PayloadType = 42
	PayloadVendor  PayloadType = 43
	PayloadTSi     PayloadType = 44
	PayloadTSr     PayloadType = 45
	PayloadSK      PayloadType = 46
	PayloadCP      PayloadType = 47
	PayloadEAP     PayloadType = 48
	PayloadSKF     PayloadType = 53
)

var payloadNames = map[PayloadType]string{
	PayloadNone: "NONE", PayloadSA: "SA", PayloadKE: "KE", PayloadIDi: "IDi",
	PayloadIDr: "IDr", PayloadCERT: "CERT", PayloadCERTREQ: "CERTREQ",
	PayloadAUTH: "AUTH", PayloadNonce: "Nonce", PayloadNotify: "N",
	PayloadDelete: "D", PayloadVendor: "V", PayloadTSi: "TSi", PayloadTSr: "TSr",
	PayloadSK: "SK", PayloadCP: "CP", PayloadEAP: "EAP", PayloadSKF: "SKF",
}

func (t PayloadType) String() string {
	if s, ok := payloadNames[t]; ok {
		return s
	}
	return "PAYLOAD(" + strconv.Itoa(int(t)) + ")"
}

// ExchangeType is the IKE header's exchange type (RFC 7296 section 3.1).
type ExchangeType uint8

// Exchange types.
const (
	IKE_SA_INIT     ExchangeType = 34
	IKE_AUTH        ExchangeType = 35
	CREATE_CHILD_SA ExchangeType = 36
	INFORMATIONAL   ExchangeType = 37
)

func (e ExchangeType) String() string {
	switch e {
	case IKE_SA_INIT:
		return "IKE_SA_INIT"
	case IKE_AUTH:
		return "IKE_AUTH"
	case CREATE_CHILD_SA:
		return "CREATE_CHILD_SA"
	case INFORMATIONAL:
		return "INFORMATIONAL"
	}
	return "EXCHANGE(" + strconv.Itoa(int(e)) + ")"
}

// Flags are the IKE header flag bits.
type Flags uint8

// Header flags (RFC 7296 section 3.1).
const (
	FlagInitiator Flags = 0x08 // sent by the original initiator of the IKE SA
	FlagVersion   Flags = 0x10 // sender could speak a higher major version
	FlagResponse  Flags = 0x20 // message is a response
)

// ProtocolID names the protocol of a proposal, notification or delete.
type ProtocolID uint8

// Protocol IDs (RFC 7296 section 3.3.1).
const (
	ProtoNone ProtocolID = 0
	ProtoIKE  ProtocolID = 1
	ProtoAH   ProtocolID = 2
	ProtoESP  ProtocolID = 3
)

// IDType is the type of an Identification payload (RFC 7296 section 3.5).
type IDType uint8

// Identification types.
const (
	IDIPv4Addr   IDType = 1
	IDFQDN       IDType = 2
	IDRFC822Addr IDType = 3
	IDIPv6Addr   IDType = 5
	IDDERASN1DN  IDType = 9
	IDDERASN1GN  IDType = 10
	IDKeyID      IDType = 11
)

// AuthMethod is the method of an AUTH payload (RFC 7296 section 3.8,
// RFC 7427).
type AuthMethod uint8

// Authentication methods.
const (
	AuthRSASig       AuthMethod = 1
	AuthSharedKeyMIC AuthMethod = 2
	AuthDSS          AuthMethod = 3
	AuthECDSA256     AuthMethod = 9
	AuthECDSA384     AuthMethod = 10
	AuthECDSA521     AuthMethod = 11
	AuthDigitalSig   AuthMethod = 14
)

// CertEncoding is the encoding of a CERT or CERTREQ payload.
type CertEncoding uint8

// Certificate encodings used in practice (RFC 7296 section 3.6).
const (
	CertX509Signature CertEncoding = 4
	CertRawRSAKey     CertEncoding = 11
	CertHashURLX509   CertEncoding = 12
	CertHashURLBundle CertEncoding = 13
)

// TSType is the type of one traffic selector (RFC 7296 section 3.13.1).
type TSType uint8

// Traffic selector types.
const (
	TSIPv4AddrRange TSType = 7
	TSIPv6AddrRange TSType = 8
	TSSecLabel      TSType = 10 // RFC 9478
)

// CPType is the type of a Configuration payload.
type CPType uint8

// Configuration payload types (RFC 7296 section 3.15).
const (
	CPRequest CPType = 1
	CPReply   CPType = 2
	CPSet     CPType = 3
	CPAck     CPType = 4
)
