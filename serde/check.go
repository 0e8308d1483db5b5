package serde

import "github.com/hamba/avro/v2"

// maxCheckDepth bounds the nesting that minimalPayload follows; deeper (or
// recursive) schemas are not checked.
const maxCheckDepth = 64

// minimalPayload appends to b the shortest valid Avro encoding of schema s:
// zero numbers, empty strings, arrays and maps, the first enum symbol and
// the first union branch. Decoding it into a Go type shows whether the type
// fits the schema before any record arrives. It reports false for a schema
// nested too deeply to check.
func minimalPayload(b []byte, s avro.Schema, depth int) ([]byte, bool) {
	if depth > maxCheckDepth {
		return b, false
	}
	switch s := s.(type) {
	case *avro.RefSchema:
		return minimalPayload(b, s.Schema(), depth+1)
	case *avro.RecordSchema:
		for _, f := range s.Fields() {
			var ok bool
			if b, ok = minimalPayload(b, f.Type(), depth+1); !ok {
				return b, false
			}
		}
		return b, true
	case *avro.UnionSchema:
		b = append(b, 0) // branch 0
		return minimalPayload(b, s.Types()[0], depth+1)
	case *avro.FixedSchema:
		return append(b, make([]byte, s.Size())...), true
	}
	switch s.Type() {
	case avro.Null:
		return b, true
	case avro.Float:
		return append(b, 0, 0, 0, 0), true
	case avro.Double:
		return append(b, 0, 0, 0, 0, 0, 0, 0, 0), true
	}
	// boolean false, int or long 0, empty bytes or string, enum index 0, and
	// an array or map of no blocks are all the single byte 0.
	return append(b, 0), true
}
