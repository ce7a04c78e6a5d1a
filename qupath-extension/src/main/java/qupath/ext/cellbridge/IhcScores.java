package qupath.ext.cellbridge;

import qupath.lib.measurements.MeasurementList;
import qupath.lib.objects.PathObject;
import qupath.lib.objects.classes.PathClass;

import java.util.Collection;

/**
 * The IHC numbers of a parent annotation from its scored detections, under the names QuPath's measurement table
 * shows for annotations (and {@code cellbridge nuclei --stain ihc-dab} writes): classes count by their last part,
 * so {@code Tumor: 2+} counts as 2+.
 * <ul>
 * <li>{@code Num Detections}: every detection or cell; {@code Num Negative}, {@code Num 1+}, {@code Num 2+},
 *     {@code Num 3+}; {@code Num Positive} = Positive + 1+ + 2+ + 3+</li>
 * <li>{@code Positive %} = Num Positive / (Num Positive + Num Negative) × 100</li>
 * <li>{@code H-score} = 1×%1+ + 2×%2+ + 3×%3+ over Negative, 1+, 2+ and 3+ (0–300; graded scoring only)</li>
 * <li>{@code Num Positive per mm^2} over the annotation's area (when the pixel size is known)</li>
 * </ul>
 * Percentages of an annotation without scored detections are NaN, as in QuPath.
 */
public final class IhcScores {

    private static final String[] GRADES = {"1+", "2+", "3+"};

    private IhcScores() {
    }

    /**
     * Write the numbers onto an annotation's measurements.
     * @param annotation the parent annotation (with an area ROI)
     * @param detections its detections and cells
     * @param graded true for Negative/1+/2+/3+ scoring (three thresholds), false for Negative/Positive (one)
     * @param pixelSizeMicrons µm per pixel, or null when unknown (no density then)
     */
    public static void putOn(PathObject annotation, Collection<PathObject> detections, boolean graded,
                             Double pixelSizeMicrons) {
        int all = 0;
        int negative = 0;
        int positive = 0;
        int[] grades = new int[GRADES.length];
        for (PathObject object : detections) {
            if (!object.isDetection())
                continue;
            all++;
            String label = label(object.getPathClass());
            if ("Negative".equals(label))
                negative++;
            else if ("Positive".equals(label))
                positive++;
            for (int g = 0; g < GRADES.length; g++) {
                if (GRADES[g].equals(label))
                    grades[g]++;
            }
        }
        positive += grades[0] + grades[1] + grades[2];
        int scored = positive + negative;
        try (MeasurementList measurements = annotation.getMeasurementList()) {
            measurements.put("Num Detections", all);
            measurements.put("Num Negative", negative);
            if (graded) {
                for (int g = 0; g < GRADES.length; g++)
                    measurements.put("Num " + GRADES[g], grades[g]);
            }
            measurements.put("Num Positive", positive);
            measurements.put("Positive %", scored == 0 ? Double.NaN : 100.0 * positive / scored);
            if (graded) {
                measurements.put("H-score", scored == 0 ? Double.NaN
                        : 100.0 * (grades[0] + 2.0 * grades[1] + 3.0 * grades[2]) / scored);
            }
            if (pixelSizeMicrons != null && annotation.hasROI()) {
                double mm2 = annotation.getROI().getArea() * pixelSizeMicrons * pixelSizeMicrons / 1e6;
                if (mm2 > 0)
                    measurements.put("Num Positive per mm^2", positive / mm2);
            }
        }
    }

    private static String label(PathClass pathClass) {
        return pathClass == null ? null : pathClass.getName();
    }
}
