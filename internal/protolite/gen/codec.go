package gen

import (
	"fmt"
	"slices"

	"google.golang.org/protobuf/compiler/protogen"
	"google.golang.org/protobuf/reflect/protoreflect"
)

// The encoding methods of the generated types: WireSize, MarshalAppend and
// Unmarshal (with merge), fields in field number order as protobuf writes
// them; proto3 scalars only when not zero, optional ones when set.

// byNumber returns m's fields in field number order, the order protobuf
// encodes them in.
func byNumber(m *protogen.Message) []*protogen.Field {
	fs := slices.Clone(m.Fields)
	slices.SortFunc(fs, func(a, b *protogen.Field) int { return int(a.Desc.Number()) - int(b.Desc.Number()) })
	return fs
}

// ifSet opens the `if` under which scalar field f (the Go expression fld)
// is encoded, where protobuf encodes it: an optional one when set, others
// when not zero. It returns the expression of the value.
func (w *file) ifSet(f *protogen.Field, fld string) string {
	switch {
	case f.Desc.HasPresence():
		w.g.P("if ", fld, " != nil {")
		return "*" + fld
	case f.Desc.Kind() == protoreflect.StringKind || f.Desc.Kind() == protoreflect.BytesKind:
		w.g.P("if len(", fld, ") > 0 {")
	default:
		w.g.P("if ", fld, " != ", zero(f), " {")
	}
	return fld
}

// varintOf is the expression of v's varint as a uint64.
func (w *file) varintOf(f *protogen.Field, v string) string {
	switch f.Desc.Kind() {
	case protoreflect.BoolKind:
		return w.rt("Bool") + "(" + v + ")"
	case protoreflect.Int32Kind, protoreflect.EnumKind:
		return "uint64(int64(" + v + "))"
	}
	return "uint64(" + v + ")"
}

func (w *file) size(m *protogen.Message) {
	g, name := w.g, m.GoIdent.GoName
	g.P("// WireSize is the length of the message's encoding.")
	g.P("func (x *", name, ") WireSize() (n int) {")
	g.P("if x == nil { return 0 }")
	for _, f := range byNumber(m) {
		num, fld := f.Desc.Number(), "x."+f.GoName
		switch {
		case isOneof(f):
			g.P("if o, ok := x.", f.Oneof.GoName, ".(*", f.GoIdent.GoName, "); ok {")
			g.P("n += ", w.rt("SizeBytes"), "(", num, ", o.", f.GoName, ".WireSize())")
			g.P("}")
		case f.Desc.IsMap():
			g.P("for k, v := range ", fld, " {")
			g.P("n += ", w.rt("SizeBytes"), "(", num, ", ", w.rt("SizeBytes"), "(1, len(k))+", w.rt("SizeBytes"), "(2, len(v)))")
			g.P("}")
		case f.Desc.IsList():
			g.P("for _, v := range ", fld, " {")
			if f.Desc.Kind() == protoreflect.MessageKind {
				g.P("n += ", w.rt("SizeBytes"), "(", num, ", v.WireSize())")
			} else {
				g.P("n += ", w.rt("SizeBytes"), "(", num, ", len(v))")
			}
			g.P("}")
		case f.Desc.Kind() == protoreflect.MessageKind:
			g.P("if ", fld, " != nil {")
			g.P("n += ", w.rt("SizeBytes"), "(", num, ", ", fld, ".WireSize())")
			g.P("}")
		case f.Desc.Kind() == protoreflect.StringKind || f.Desc.Kind() == protoreflect.BytesKind:
			v := w.ifSet(f, fld)
			g.P("n += ", w.rt("SizeBytes"), "(", num, ", len(", v, "))")
			g.P("}")
		default:
			v := w.ifSet(f, fld)
			g.P("n += ", w.rt("SizeTag"), "(", num, ") + ", w.rt("SizeVarint"), "(", w.varintOf(f, v), ")")
			g.P("}")
		}
	}
	g.P("return n")
	g.P("}")
	g.P()
}

func (w *file) marshal(m *protogen.Message) {
	g, name, full := w.g, m.GoIdent.GoName, string(m.Desc.FullName())
	g.P("// MarshalAppend appends the message's encoding to b.")
	g.P("func (x *", name, ") MarshalAppend(b []byte) ([]byte, error) {")
	g.P("if x == nil { return b, nil }")
	g.P("var err error")
	g.P("_ = err")
	str := func(num protoreflect.FieldNumber, v, field string) {
		g.P("if b, err = ", w.rt("AppendStringField"), "(b, ", num, ", ", v, ", ", fmt.Sprintf("%q, %q", full, field), "); err != nil { return b, err }")
	}
	msg := func(num protoreflect.FieldNumber, v string) {
		g.P("b = ", w.rt("AppendLen"), "(b, ", num, ", ", v, ".WireSize())")
		g.P("if b, err = ", v, ".MarshalAppend(b); err != nil { return b, err }")
	}
	for _, f := range byNumber(m) {
		num, fld, field := f.Desc.Number(), "x."+f.GoName, string(f.Desc.Name())
		switch {
		case isOneof(f):
			g.P("if o, ok := x.", f.Oneof.GoName, ".(*", f.GoIdent.GoName, "); ok {")
			msg(num, "o."+f.GoName)
			g.P("}")
		case f.Desc.IsMap():
			g.P("for k, v := range ", fld, " {")
			g.P("b = ", w.rt("AppendLen"), "(b, ", num, ", ", w.rt("SizeBytes"), "(1, len(k))+", w.rt("SizeBytes"), "(2, len(v)))")
			str(1, "k", field+".key")
			str(2, "v", field+".value")
			g.P("}")
		case f.Desc.IsList():
			g.P("for _, v := range ", fld, " {")
			switch f.Desc.Kind() {
			case protoreflect.MessageKind:
				msg(num, "v")
			case protoreflect.StringKind:
				str(num, "v", field)
			default:
				g.P("b = ", w.rt("AppendBytesField"), "(b, ", num, ", v)")
			}
			g.P("}")
		case f.Desc.Kind() == protoreflect.MessageKind:
			g.P("if ", fld, " != nil {")
			msg(num, fld)
			g.P("}")
		case f.Desc.Kind() == protoreflect.StringKind || f.Desc.Kind() == protoreflect.BytesKind:
			v := w.ifSet(f, fld)
			if f.Desc.Kind() == protoreflect.StringKind {
				str(num, v, field)
			} else {
				g.P("b = ", w.rt("AppendBytesField"), "(b, ", num, ", ", v, ")")
			}
			g.P("}")
		default:
			v := w.ifSet(f, fld)
			g.P("b = ", w.rt("AppendVarintField"), "(b, ", num, ", ", w.varintOf(f, v), ")")
			g.P("}")
		}
	}
	g.P("return b, nil")
	g.P("}")
	g.P()
}

// fromVarint is the expression of field f's value from varint v.
func (w *file) fromVarint(f *protogen.Field) string {
	switch f.Desc.Kind() {
	case protoreflect.BoolKind:
		return "v != 0"
	case protoreflect.Int32Kind:
		return "int32(v)"
	case protoreflect.Int64Kind:
		return "int64(v)"
	case protoreflect.Uint32Kind:
		return "uint32(v)"
	case protoreflect.EnumKind:
		return f.Enum.GoIdent.GoName + "(int32(v))"
	}
	return "v"
}

func (w *file) unmarshal(m *protogen.Message) {
	g, name, full := w.g, m.GoIdent.GoName, string(m.Desc.FullName())
	g.P("// Unmarshal replaces the message with the one b encodes.")
	g.P("func (x *", name, ") Unmarshal(b []byte) error {")
	g.P("*x = ", name, "{}")
	g.P("return x.merge(b)")
	g.P("}")
	g.P()
	g.P("// merge decodes b into the message, as protobuf merges: scalars are")
	g.P("// replaced, lists appended to, messages merged.")
	g.P("func (x *", name, ") merge(b []byte) error {")
	g.P("for len(b) > 0 {")
	g.P("num, typ, n, err := ", w.rt("ConsumeTag"), "(b)")
	g.P("if err != nil { return err }")
	g.P("b = b[n:]")
	if len(m.Fields) == 0 {
		g.P("_ = num")
	}
	g.P("switch {")
	for _, f := range byNumber(m) {
		num, fld, field := f.Desc.Number(), "x."+f.GoName, string(f.Desc.Name())
		kind := f.Desc.Kind()
		wire := "WireBytes"
		if !f.Desc.IsMap() && !f.Desc.IsList() && kind != protoreflect.MessageKind && kind != protoreflect.StringKind && kind != protoreflect.BytesKind {
			wire = "WireVarint"
		}
		g.P("case num == ", num, " && typ == ", w.rt(wire), ":")
		if wire == "WireVarint" {
			g.P("v, vn, err := ", w.rt("ConsumeVarint"), "(b)")
			g.P("if err != nil { return err }")
			if f.Desc.HasPresence() {
				g.P("val := ", w.fromVarint(f))
				g.P(fld, " = &val")
			} else {
				g.P(fld, " = ", w.fromVarint(f))
			}
			g.P("n = vn")
			continue
		}
		if kind == protoreflect.StringKind && !f.Desc.IsMap() {
			g.P("v, vn, err := ", w.rt("ConsumeString"), "(b, ", fmt.Sprintf("%q, %q", full, field), ")")
		} else {
			g.P("v, vn, err := ", w.rt("ConsumeBytes"), "(b)")
		}
		g.P("if err != nil { return err }")
		switch {
		case f.Desc.IsMap():
			g.P("k, val, err := ", w.rt("ConsumeStringMapEntry"), "(v, ", fmt.Sprintf("%q, %q", full, field), ")")
			g.P("if err != nil { return err }")
			g.P("if ", fld, " == nil { ", fld, " = map[string]string{} }")
			g.P(fld, "[k] = val")
		case isOneof(f):
			g.P("o, ok := x.", f.Oneof.GoName, ".(*", f.GoIdent.GoName, ")")
			g.P("if !ok || o.", f.GoName, " == nil {")
			g.P("o = &", f.GoIdent.GoName, "{", f.GoName, ": new(", f.Message.GoIdent.GoName, ")}")
			g.P("x.", f.Oneof.GoName, " = o")
			g.P("}")
			g.P("if err := o.", f.GoName, ".merge(v); err != nil { return err }")
		case f.Desc.IsList() && kind == protoreflect.MessageKind:
			g.P("e := new(", f.Message.GoIdent.GoName, ")")
			g.P("if err := e.merge(v); err != nil { return err }")
			g.P(fld, " = append(", fld, ", e)")
		case f.Desc.IsList() && kind == protoreflect.StringKind:
			g.P(fld, " = append(", fld, ", v)")
		case f.Desc.IsList():
			g.P(fld, " = append(", fld, ", append([]byte{}, v...))")
		case kind == protoreflect.MessageKind:
			g.P("if ", fld, " == nil { ", fld, " = new(", f.Message.GoIdent.GoName, ") }")
			g.P("if err := ", fld, ".merge(v); err != nil { return err }")
		case kind == protoreflect.StringKind && f.Desc.HasPresence():
			g.P(fld, " = &v")
		case kind == protoreflect.StringKind:
			g.P(fld, " = v")
		case f.Desc.HasPresence():
			g.P("val := append([]byte{}, v...)")
			g.P(fld, " = &val")
		default:
			// A copy: b is the caller's buffer, which it may reuse.
			g.P(fld, " = append([]byte{}, v...)")
		}
		g.P("n = vn")
	}
	g.P("default:")
	g.P("if n, err = ", w.rt("Skip"), "(b, typ); err != nil { return err }")
	g.P("}")
	g.P("b = b[n:]")
	g.P("}")
	g.P("return nil")
	g.P("}")
	g.P()
}
