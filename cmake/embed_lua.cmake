# Writes OUT, a C file holding every DIR/PATTERN file (default *.lua) as a
# byte array, with a table
#   const ln_embedded_script TABLE[] = {{"PREFIXname", bytes, len}, ..., {0}};
# TABLE defaults to ln_embedded_scripts and PREFIX to "lunet." (the pure-Lua
# parts of the module); the manual is embedded with PATTERN=*.md,
# TABLE=ln_embedded_docs, PREFIX="" and EXCLUDE=README.md (a file name left
# out).  The files go in sorted order.
if(NOT DEFINED PATTERN)
  set(PATTERN "*.lua")
endif()
if(NOT DEFINED TABLE)
  set(TABLE ln_embedded_scripts)
endif()
if(NOT DEFINED PREFIX)
  set(PREFIX "lunet.")
endif()
file(GLOB files "${DIR}/${PATTERN}")
list(SORT files)
set(body "/* Generated from the files in ${DIR} by cmake/embed_lua.cmake. Do not edit. */\n#include <stddef.h>\n#include \"embedded.h\"\n\n")
set(table "const ln_embedded_script ${TABLE}[] = {\n")
set(i 0)
foreach(f ${files})
  get_filename_component(file_name ${f} NAME)
  if(DEFINED EXCLUDE AND file_name STREQUAL EXCLUDE)
    continue()
  endif()
  get_filename_component(name ${f} NAME_WE)
  file(READ ${f} hex HEX)
  string(LENGTH "${hex}" hexlen)
  math(EXPR len "${hexlen} / 2")
  string(REGEX REPLACE "([0-9a-f][0-9a-f])" "0x\\1," bytes "${hex}")
  string(APPEND body "static const unsigned char file${i}[] = {${bytes}};\n")
  string(APPEND table "\t{\"${PREFIX}${name}\", (const char *)file${i}, ${len}},\n")
  math(EXPR i "${i} + 1")
endforeach()
string(APPEND table "\t{NULL, NULL, 0}\n};\n")
file(WRITE ${OUT} "${body}\n${table}")
