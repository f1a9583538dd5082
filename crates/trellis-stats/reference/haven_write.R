#!/usr/bin/env Rscript
# An XPORT v5 file written by R haven, and what it should read as.
#
# Builds a small ADSL-like data frame, writes it with haven::write_xpt(version = 5) to
# reference/fixtures/haven_written/adsl_haven.xpt, and writes every column's name, label,
# type, storage length and format and every value to
# reference/fixtures/haven_written/expected.json. The expected values come from the data
# frame in R, not from reading the file, so they are independent of trellis's reader.
# xportr writes through haven::write_xpt, so this covers xportr-written files too.
#
# Run from the crate directory (Debian: apt-get install r-base-core r-cran-haven):
#
#     Rscript reference/haven_write.R
#
# Needs only haven (no jsonlite: the JSON is written by hand below). Re-running gives the
# same expected.json; the .xpt differs only in the created/modified timestamps, which
# ReadStat sets to the time of writing.
#
# Numbers go to JSON as "%.17g" text, which parses back to the same double; a missing
# number is written as its SAS code: "." (NA) or ".A"-".Z" (haven tagged NA). A missing
# character value (NA) is written by haven as blanks, so it is expected as "".

suppressPackageStartupMessages(library(haven))

args <- commandArgs(trailingOnly = FALSE)
script <- sub("^--file=", "", args[grep("^--file=", args)])
here <- if (length(script) == 1) dirname(normalizePath(script)) else "reference"
out_dir <- file.path(here, "fixtures", "haven_written")
dir.create(out_dir, showWarnings = FALSE, recursive = TRUE)
xpt_path <- file.path(out_dir, "adsl_haven.xpt")
json_path <- file.path(out_dir, "expected.json")

# ---------------------------------------------------------------------------------------
# The data
# ---------------------------------------------------------------------------------------

set.seed(20261207)
n <- 30L
arms <- c("Placebo", "Xanomeline Low Dose", "Xanomeline High Dose")

with_attrs <- function(x, label = NULL, format = NULL, width = NULL) {
  if (!is.null(label)) attr(x, "label") <- label
  if (!is.null(format)) attr(x, "format.sas") <- format
  if (!is.null(width)) attr(x, "width") <- width
  x
}

age <- as.numeric(sample(45:89, n, replace = TRUE))
age[7] <- NA
weight <- round(runif(n, 48, 110), 1)
weight[4] <- NA
# SAS special missing values .A and .Z, as haven tagged NAs. haven 2.5.1 (ReadStat 1.1.8)
# accepts only upper-case tags when writing XPORT: tagged_na("a") fails with "A provided
# tag value was outside the range of allowed values in the specified file format".
weight[9] <- tagged_na("A")
weight[21] <- tagged_na("Z")
height <- round(runif(n, 150, 195), 1)
bmi <- weight / (height / 100)^2 # full double precision, shown with 8.2
bmi[c(4, 9, 21)] <- NA # NA, not tagged: arithmetic on a tagged NA keeps no tag we rely on
trtsdt <- as.Date("2014-01-02") + sample(0:400, n, replace = TRUE)
trtedt <- trtsdt + sample(20:200, n, replace = TRUE)
trtedt[c(3, 17)] <- NA
trtsdtm <- as.POSIXct(trtsdt, tz = "UTC") + 3600 * 8 + 60 * sample(0:59, n, replace = TRUE)
# Extreme magnitudes and awkward fractions. The IBM range is about 5.4e-79 to 7.2e75, but
# haven 2.5.1 (ReadStat 1.1.8) writes every magnitude from 2^249 (about 9.05e74) up as the
# largest IBM number (7FFFFFFFFFFFFFFF): 1e75 or 7e75 would not survive, 9e74 does.
extremes <- c(
  1e-70, 1e70, -1e-70, -1e70, 1e-75, 9e74, 0, 1, -1, 0.1, 1 / 3, pi, -2.5,
  123456789.123456789, 2^-52, 1 + 2^-52, 2^53, 1e15 + 0.5, 2e-78,
  65536, 16^-64, 16^62, 0.5, 1e-5, 99999999, NA, tagged_na("A"), tagged_na("Z"), 42, -0.001
)
stopifnot(length(extremes) == n)
long_text <- strrep("0123456789", 20) # 200 bytes: the XPORT v5 maximum

adsl <- data.frame(
  STUDYID = with_attrs(rep("CDISCPILOT01", n), "Study Identifier", "$12."),
  USUBJID = with_attrs(sprintf("01-%03d-%04d", 701 + (seq_len(n) - 1) %/% 10, 1000 + seq_len(n)),
    "Unique Subject Identifier", "$20.",
    width = 20L
  ),
  AGE = with_attrs(age, "Age", "8."),
  SEX = with_attrs(sample(c("M", "F"), n, replace = TRUE), "Sex", "$1."),
  RACE = with_attrs(
    sample(c("WHITE", "BLACK OR AFRICAN AMERICAN", "ASIAN"), n, replace = TRUE),
    "Race of the Subject as Collected on eCRF" # 40 characters: the v5 limit
  ),
  TRT01A = with_attrs(sample(arms, n, replace = TRUE), "Actual Treatment for Period 01"),
  TRTSDT = with_attrs(trtsdt, "Date of First Exposure to Treatment", "DATE9."),
  TRTEDT = with_attrs(trtedt, "Date of Last Exposure to Treatment"), # haven's default format
  TRTSDTM = with_attrs(trtsdtm, "Datetime of First Exposure to Treatment", "DATETIME20."),
  WEIGHTBL = with_attrs(weight, "Weight (kg) at Baseline", "8.1"),
  BMIBL = with_attrs(bmi, "BMI (kg/m2) at Baseline", "8.2"),
  XVAL = with_attrs(extremes, "Extreme magnitudes", "BEST12."),
  COMM = with_attrs(c(long_text, NA, "", "  leading blanks", rep("x", n - 4)), "Comment"),
  SITE = with_attrs(rep(c("Zürich", "Boston"), n / 2), "Site (UTF-8 text)"),
  stringsAsFactors = FALSE
)

write_xpt(adsl, xpt_path, version = 5, name = "ADSL", label = "Subject-Level Analysis Dataset")

# haven reads its own file back the same (a check of the data, not of trellis). Numbers
# only to within 2 ulp: ReadStat's IBM -> IEEE conversion is not correctly rounded (it
# reads 1e70 as 1.0000000000000001e70 although the file holds 1e70 exactly).
back <- read_xpt(xpt_path)
for (v in names(adsl)) {
  a <- adsl[[v]]
  b <- back[[v]]
  if (is.character(a)) {
    stopifnot(identical(ifelse(is.na(a), "", sub(" +$", "", a)), as.character(b)))
  } else {
    stopifnot(identical(is.na(as.numeric(a)), is.na(as.numeric(b))))
    ok <- !is.na(as.numeric(a))
    stopifnot(all(abs(as.numeric(a)[ok] - as.numeric(b)[ok]) <=
      2 * .Machine$double.eps * abs(as.numeric(a)[ok])))
    if (is.double(a) && !inherits(a, c("Date", "POSIXct"))) {
      stopifnot(identical(toupper(na_tag(a)), toupper(na_tag(b))))
    }
  }
}

# ---------------------------------------------------------------------------------------
# Expected values, from the data frame
# ---------------------------------------------------------------------------------------

js <- function(s) {
  s <- gsub("\\", "\\\\", s, fixed = TRUE)
  s <- gsub("\"", "\\\"", s, fixed = TRUE)
  paste0("\"", s, "\"")
}

# "DATE9." -> DATE, 9, 0; "8.2" -> "", 8, 2; "$20." -> $, 20, 0; "DATE" -> DATE, 0, 0
parse_format <- function(f) {
  if (is.null(f) || f == "") {
    return(list(name = "", width = 0L, decimals = 0L))
  }
  m <- regmatches(f, regexec("^(\\$?[A-Za-z_]*)([0-9]*)\\.?([0-9]*)$", f))[[1]]
  stopifnot(length(m) == 4)
  list(
    name = toupper(m[2]),
    width = if (m[3] == "") 0L else as.integer(m[3]),
    decimals = if (m[4] == "") 0L else as.integer(m[4])
  )
}

sas_days <- function(d) as.numeric(d) + 3653 # 1960-01-01 is 3653 days before 1970-01-01
sas_seconds <- function(t) as.numeric(t) + 3653 * 86400

columns <- lapply(names(adsl), function(v) {
  x <- adsl[[v]]
  label <- attr(x, "label")
  if (is.null(label)) label <- ""
  fmt <- attr(x, "format.sas")
  if (is.null(fmt) && inherits(x, "Date")) fmt <- "DATE" # what haven writes for a Date
  if (is.character(x)) {
    vals <- ifelse(is.na(x), "", sub(" +$", "", x))
    w <- attr(x, "width")
    len <- if (is.null(w)) max(1L, nchar(x[!is.na(x)], type = "bytes")) else w
    list(name = v, label = label, type = "char", length = len, format = parse_format(fmt), values = vals)
  } else {
    num <- if (inherits(x, "Date")) {
      sas_days(x)
    } else if (inherits(x, "POSIXct")) {
      sas_seconds(x)
    } else {
      as.numeric(x)
    }
    tag <- if (inherits(x, c("Date", "POSIXct"))) rep(NA_character_, n) else na_tag(x)
    vals <- ifelse(!is.na(num), sprintf("%.17g", num), ifelse(is.na(tag), ".", paste0(".", toupper(tag))))
    list(name = v, label = label, type = "numeric", length = 8L, format = parse_format(fmt), values = vals)
  }
})

fmt_json <- function(f) {
  sprintf("{\"name\": %s, \"width\": %d, \"decimals\": %d}", js(f$name), f$width, f$decimals)
}
col_json <- vapply(columns, function(c) {
  paste0(
    "  {\n",
    "   \"name\": ", js(c$name), ",\n",
    "   \"label\": ", js(c$label), ",\n",
    "   \"type\": ", js(c$type), ",\n",
    "   \"length\": ", c$length, ",\n",
    "   \"format\": ", fmt_json(c$format), ",\n",
    "   \"values\": [", paste(js(c$values), collapse = ", "), "]\n",
    "  }"
  )
}, "")

json <- paste0(
  "{\n",
  " \"versions\": {\"R\": ", js(paste(R.version$major, R.version$minor, sep = ".")),
  ", \"haven\": ", js(as.character(packageVersion("haven"))), "},\n",
  " \"source\": \"reference/haven_write.R: the data frame given to haven::write_xpt(version = 5)\",\n",
  " \"file\": \"adsl_haven.xpt\",\n",
  " \"member\": {\"name\": \"ADSL\", \"label\": \"Subject-Level Analysis Dataset\"},\n",
  " \"rows\": ", n, ",\n",
  " \"columns\": [\n", paste(col_json, collapse = ",\n"), "\n ]\n",
  "}\n"
)
con <- file(json_path, open = "w", encoding = "UTF-8")
writeLines(json, con, sep = "")
close(con)
cat("wrote", xpt_path, "and", json_path, "\n")
