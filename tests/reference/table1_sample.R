# Reference values for Table 1 of the built-in sample cohort (data/sample/clinical.csv), computed
# with R and the packages SPSS users cross-check against. tests/test_table_one_r.py compares
# crc_core.stats.table_one with the CSV this writes, row by row.
#
#   Rscript tests/reference/table1_sample.R data/sample/clinical.csv tests/reference/table1_sample_r.csv
#
# R 4.2.2 (the paper's version), nortest 1.0-4, car 3.1-1 (Debian bookworm's r-cran-* packages).
suppressPackageStartupMessages({ library(nortest); library(car) })

args <- commandArgs(trailingOnly = TRUE)
clinical <- read.csv(args[1], check.names = FALSE, stringsAsFactors = FALSE)
group <- factor(clinical$split, levels = c("train", "validation"))
categorical <- c("sex", "age_group", "pT", "pN")
continuous <- setdiff(names(clinical), c("patient_id", "split", categorical))
rows <- list()

for (v in continuous) {
  x <- clinical[[v]]
  keep <- !is.na(x)
  a <- x[keep & group == "train"]; b <- x[keep & group == "validation"]
  ks_a <- lillie.test(a); ks_b <- lillie.test(b)                      # nortest::lillie.test
  lev <- leveneTest(x[keep] ~ group[keep], center = mean)               # car::leveneTest(center = mean)
  student <- t.test(a, b, var.equal = TRUE)                             # t.test(var.equal = TRUE)
  welch <- t.test(a, b, var.equal = FALSE)                              # t.test(var.equal = FALSE)
  mw <- wilcox.test(a, b, exact = FALSE, correct = FALSE)               # wilcox.test(exact = FALSE, correct = FALSE)
  rows[[v]] <- data.frame(
    variable = v, kind = "continuous", missing = sum(!keep),
    ks_d_train = unname(ks_a$statistic), ks_p_train = ks_a$p.value,
    ks_d_validation = unname(ks_b$statistic), ks_p_validation = ks_b$p.value,
    levene_f = lev[1, "F value"], levene_p = lev[1, "Pr(>F)"],
    t_student = unname(student$statistic), p_student = student$p.value,
    t_welch = unname(welch$statistic), p_welch = welch$p.value,
    mw_z = qnorm(mw$p.value / 2), mw_p = mw$p.value,                    # SPSS prints Z from the smaller U: Z <= 0
    mean_train = mean(a), sd_train = sd(a), mean_validation = mean(b), sd_validation = sd(b),
    q1_train = unname(quantile(a, 0.25, type = 6)), median_train = median(a), q3_train = unname(quantile(a, 0.75, type = 6)),
    q1_validation = unname(quantile(b, 0.25, type = 6)), median_validation = median(b),
    q3_validation = unname(quantile(b, 0.75, type = 6)),
    chi2 = NA, df = NA, chi2_p = NA
  )
}
for (v in categorical) {
  counts <- table(clinical[[v]], group)
  test <- suppressWarnings(chisq.test(counts, correct = FALSE))         # chisq.test(correct = FALSE)
  rows[[v]] <- data.frame(variable = v, kind = "categorical", missing = sum(is.na(clinical[[v]])),
                          chi2 = unname(test$statistic), df = unname(test$parameter), chi2_p = test$p.value)
}
all_columns <- unique(unlist(lapply(rows, names)))
table <- do.call(rbind, lapply(rows, function(r) { r[setdiff(all_columns, names(r))] <- NA; r[all_columns] }))
write.csv(table, args[2], row.names = FALSE, na = "")
cat(sprintf("%s: %d variables, %s\n", args[2], nrow(table), R.version.string))
