// The Python binding of the argument records of rg/ops.h, generated from their X-macro field
// lists: each record is a `py::class_` with one read/write property per field (pointers as
// integers: torch `tensor.data_ptr()`), so an op's binding is the single line
// `m.def("<op>_<backend>", &op)` and its arguments are written once, in rg/ops.h.
#pragma once

#include <pybind11/pybind11.h>

#include <cstdint>
#include <type_traits>

#include "rg/ops.h"

namespace rg::bind {

namespace py = pybind11;

// Field `name` of a record as a Python property: a pointer reads and writes as an integer.
template <class Cls, class S, class T>
void field(Cls& cls, py::list& names, const char* name, T S::*member) {
  names.append(name);
  if constexpr (std::is_pointer_v<T>) {
    cls.def_property(
        name, [member](const S& s) { return reinterpret_cast<std::uintptr_t>(s.*member); },
        [member](S& s, std::uintptr_t v) { s.*member = reinterpret_cast<T>(v); });
  } else {
    cls.def_readwrite(name, member);
  }
}

#define RG_BIND_FIELD(type, name, init) field(cls, names, #name, &Rec::name);

// class Rec(Exec) with a `fields` tuple naming its own fields (the Exec ones are inherited).
#define RG_BIND_RECORD(Rec_, FIELDS)                                               \
  {                                                                                 \
    using Rec = ::rg::Rec_;                                                         \
    py::class_<Rec, ::rg::Exec> cls(m, #Rec_, "Arguments (rg/ops.h: " #FIELDS ")."); \
    cls.def(py::init<>());                                                          \
    py::list names;                                                                 \
    FIELDS(RG_BIND_FIELD)                                                           \
    cls.attr("fields") = py::tuple(names);                                          \
  }
#define RG_BIND_GRAD_RECORD(Rec_, FIELDS)                                 \
  {                                                                        \
    using Rec = ::rg::Rec_;                                                \
    py::class_<Rec> cls(m, #Rec_, "Gradients (rg/ops.h: " #FIELDS ")."); \
    cls.def(py::init<>());                                                 \
    py::list names;                                                        \
    FIELDS(RG_BIND_FIELD)                                                  \
    cls.attr("fields") = py::tuple(names);                                 \
  }

// Binds Exec and every record of rg/ops.h into module m.
inline void bind_records(py::module_& m) {
  {
    using Rec = ::rg::Exec;
    py::class_<Rec> cls(m, "Exec", "Execution context shared by every record (rg/ops.h).");
    cls.def(py::init<>());
    py::list names;
    RG_EXEC_FIELDS(RG_BIND_FIELD)
    cls.attr("fields") = py::tuple(names);
  }
  RG_RECORDS(RG_BIND_RECORD)
  RG_GRAD_RECORDS(RG_BIND_GRAD_RECORD)
  m.attr("ERROR_SLOTS") = py::dict(py::arg("faces") = (int)kErrFaces,
                                   py::arg("face_ids") = (int)kErrFaceIds,
                                   py::arg("isect_fill") = (int)kErrIsectFill);
}

}  // namespace rg::bind
