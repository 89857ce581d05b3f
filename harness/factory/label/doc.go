// Package label makes the FFS product label (the FFS manufacturing guide; the Provisionee 2D
// Barcode Specification): the 2D barcode payload from the bench's template, a Data Matrix
// ECC 200 symbol of it, and the device's serial as Code 128 and as text; PNG and SVG.
//
// # Concepts
//
//   - Payload: `key:value` pairs joined by `;` from a template with {serial}, {puk} (the
//     compressed DHA public key) and {pin} (the setup PIN). Values may not hold `;` or `:`. The
//     PIN is a secret: no error or warning of this package quotes it or the payload.
//   - Size: 36x36 (the guide) when the payload fits, else the smallest square that does, with a
//     warning naming the payload's length and the size; beyond 132x132 the payload is refused
//     (ErrTooBig). The five-field payload of a P-256 key needs 44x44.
//   - Encoders, not hand-written Reed-Solomon: gozxing's (the densest modes) first, boombuler's
//     ASCII encoder when gozxing's symbol does not decode back; every symbol is decoded before use.
//   - Print geometry: Options.ModuleSize printer dots a module at Options.DPI; quiet zones of 2
//     modules around the Data Matrix and 10 narrow bars around the Code 128 (half a module wide).
//     The PNG is 1 bit a pixel with a pHYs chunk; the SVG is sized in millimetres.
package label
