package message

import "strconv"

// NotifyType is the Notify Message Type (RFC 7296 section 3.10.1, IANA
// "IKEv2 Notify Message Types"). Values below 16384 are errors.
type NotifyType uint16

// Error notifications.
const (
	UNSUPPORTED_CRITICAL_PAYLOAD NotifyType = 1
	INVALID_IKE_SPI              NotifyType = 4
	INVALID_MAJOR_VERSION        NotifyType = 5
	INVALID_SYNTAX               NotifyType = 7
	INVALID_MESSAGE_ID           NotifyType = 9
	INVALID_SPI                  NotifyType = 11
	NO_PROPOSAL_CHOSEN           NotifyType = 14
	INVALID_KE_PAYLOAD           NotifyType = 17
	AUTHENTICATION_FAILED        NotifyType = 24
	SINGLE_PAIR_REQUIRED         NotifyType = 34
	NO_ADDITIONAL_SAS            NotifyType = 35
	INTERNAL_ADDRESS_FAILURE     NotifyType = 36
	FAILED_CP_REQUIRED           NotifyType = 37
	TS_UNACCEPTABLE              NotifyType = 38
	INVALID_SELECTORS            NotifyType = 39
	TEMPORARY_FAILURE            NotifyType = 43
	CHILD_SA_NOT_FOUND           NotifyType = 44
)

// Status notifications.
const (
	INITIAL_CONTACT               NotifyType = 16384
	SET_WINDOW_SIZE               NotifyType = 16385
	ADDITIONAL_TS_POSSIBLE        NotifyType = 16386
	IPCOMP_SUPPORTED              NotifyType = 16387
	NAT_DETECTION_SOURCE_IP       NotifyType = 16388
	NAT_DETECTION_DESTINATION_IP  NotifyType = 16389
	COOKIE                        NotifyType = 16390
	USE_TRANSPORT_MODE            NotifyType = 16391
	HTTP_CERT_LOOKUP_SUPPORTED    NotifyType = 16392
	REKEY_SA                      NotifyType = 16393
	ESP_TFC_PADDING_NOT_SUPPORTED NotifyType = 16394
	NON_FIRST_FRAGMENTS_ALSO      NotifyType = 16395
	MOBIKE_SUPPORTED              NotifyType = 16396
	IKEV2_FRAGMENTATION_SUPPORTED NotifyType = 16430
	SIGNATURE_HASH_ALGORITHMS     NotifyType = 16431
)

// IsError reports whether n is an error notification (type below 16384).
func (n NotifyType) IsError() bool { return n < 16384 }

var notifyNames = map[NotifyType]string{
	UNSUPPORTED_CRITICAL_PAYLOAD:  "UNSUPPORTED_CRITICAL_PAYLOAD",
	INVALID_IKE_SPI:               "INVALID_IKE_SPI",
	INVALID_MAJOR_VERSION:         "INVALID_MAJOR_VERSION",
	INVALID_SYNTAX:                "INVALID_SYNTAX",
	INVALID_MESSAGE_ID:            "INVALID_MESSAGE_ID",
	INVALID_SPI:                   "INVALID_SPI",
	NO_PROPOSAL_CHOSEN:            "NO_PROPOSAL_CHOSEN",
	INVALID_KE_PAYLOAD:            "INVALID_KE_PAYLOAD",
	AUTHENTICATION_FAILED:         "AUTHENTICATION_FAILED",
	SINGLE_PAIR_REQUIRED:          "SINGLE_PAIR_REQUIRED",
	NO_ADDITIONAL_SAS:             "NO_ADDITIONAL_SAS",
	INTERNAL_ADDRESS_FAILURE:      "INTERNAL_ADDRESS_FAILURE",
	FAILED_CP_REQUIRED:            "FAILED_CP_REQUIRED",
	TS_UNACCEPTABLE:               "TS_UNACCEPTABLE",
	INVALID_SELECTORS:             "INVALID_SELECTORS",
	TEMPORARY_FAILURE:             "TEMPORARY_FAILURE",
	CHILD_SA_NOT_FOUND:            "CHILD_SA_NOT_FOUND",
	INITIAL_CONTACT:               "INITIAL_CONTACT",
	SET_WINDOW_SIZE:               "SET_WINDOW_SIZE",
	ADDITIONAL_TS_POSSIBLE:        "ADDITIONAL_TS_POSSIBLE",
	IPCOMP_SUPPORTED:              "IPCOMP_SUPPORTED",
	NAT_DETECTION_SOURCE_IP:       "NAT_DETECTION_SOURCE_IP",
	NAT_DETECTION_DESTINATION_IP:  "NAT_DETECTION_DESTINATION_IP",
	COOKIE:                        "COOKIE",
	USE_TRANSPORT_MODE:            "USE_TRANSPORT_MODE",
	HTTP_CERT_LOOKUP_SUPPORTED:    "HTTP_CERT_LOOKUP_SUPPORTED",
	REKEY_SA:                      "REKEY_SA",
	ESP_TFC_PADDING_NOT_SUPPORTED: "ESP_TFC_PADDING_NOT_SUPPORTED",
	NON_FIRST_FRAGMENTS_ALSO:      "NON_FIRST_FRAGMENTS_ALSO",
	MOBIKE_SUPPORTED:              "MOBIKE_SUPPORTED",
	IKEV2_FRAGMENTATION_SUPPORTED: "IKEV2_FRAGMENTATION_SUPPORTED",
	SIGNATURE_HASH_ALGORITHMS:     "SIGNATURE_HASH_ALGORITHMS",
}

func (n NotifyType) String() string {
	if s, ok := notifyNames[n]; ok {
		return s
	}
	return "NOTIFY(" + strconv.Itoa(int(n)) + ")"
}
