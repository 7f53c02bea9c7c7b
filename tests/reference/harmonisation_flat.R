# Reference values for crc_core.harmonisation's features that vary in some centres only, from R with
# sva (Debian bookworm's r-bioc-sva), on tests/reference/harmonisation_flat_data.csv: the data of
# harmonisation.R plus feature_6 (constant within centre A), feature_7 (constant within every
# centre, different between them) and feature_8 (the same for everyone). sva::ComBat leaves a
# feature with no variance within any one centre unadjusted ("uniform expression within a single
# batch") and fits the others without it.
#
#   Rscript tests/reference/harmonisation_flat.R tests/reference/harmonisation_flat_data.csv tests/reference/harmonisation_flat_r.json
suppressPackageStartupMessages(library(sva))
args <- commandArgs(trailingOnly = TRUE)
d <- read.csv(args[1])
dat <- t(as.matrix(d[, grep("^feature_", names(d))]))
quiet <- function(expr) suppressMessages(expr)
plain <- quiet(ComBat(dat, batch = d$centre))
covariates <- quiet(ComBat(dat, batch = d$centre, mod = model.matrix(~ sex + age, data = d)))
out <- list(combat = unname(t(plain)), combat_sex_age = unname(t(covariates)),
            sva = as.character(packageVersion("sva")), r = R.version.string)
writeLines(jsonlite::toJSON(out, digits = NA, pretty = FALSE), args[2])
