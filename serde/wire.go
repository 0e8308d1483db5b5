package serde

import (
	"encoding/binary"
	"fmt"

	"github.com/twmb/franz-go/pkg/sr"
)

// headerLen is the length of the Confluent header: magic byte 0, then the
// schema ID as a 4-byte big-endian integer.
const headerLen = 5

// splitHeader returns the schema ID and the payload after the header.
// sr.ConfluentHeader.DecodeID folds a short input and a wrong magic byte
// into one error; records need the two told apart.
func splitHeader(b []byte) (id int, payload []byte, err error) {
	if len(b) > 0 && b[0] != 0 {
		return -1, nil, fmt.Errorf("%w: first byte is 0x%02x, want 0x00", ErrBadMagic, b[0])
	}
	if len(b) < headerLen {
		return -1, nil, fmt.Errorf("%w: %d bytes, shorter than the %d-byte header", ErrTruncated, len(b), headerLen)
	}
	return int(binary.BigEndian.Uint32(b[1:headerLen])), b[headerLen:], nil
}

// appendHeader appends the Confluent header for schema ID id to b.
func appendHeader(b []byte, id int) []byte {
	var h sr.ConfluentHeader
	b, _ = h.AppendEncode(b, id, nil) // never fails
	return b
}
