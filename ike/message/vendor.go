package message

// VendorID is the Vendor ID payload (RFC 7296 section 3.12).
type VendorID struct {
	Data []byte
}

// Type implements Payload.
func (*VendorID) Type() PayloadType { return PayloadVendor }

func (v *VendorID) appendBody(b []byte) []byte { return append(b, v.Data...) }
func (v *VendorID) decodeBody(b []byte) error  { v.Data = opt(b); return nil }
