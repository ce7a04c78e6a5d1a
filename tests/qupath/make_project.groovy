/**
 * Test helper, run by QuPath's command line (`QuPath script make_project.groovy --args ...`): make a QuPath project
 * whose images are the given files, each with the annotations of its QuPath GeoJSON, read by QuPath itself.
 * args: the project folder, then pairs of image file and GeoJSON file.
 */
import qupath.lib.images.ImageData
import qupath.lib.images.servers.ImageServerProvider
import qupath.lib.io.PathIO
import qupath.lib.projects.Projects

import java.awt.image.BufferedImage

def folder = new File(args[0])
folder.mkdirs()
def project = Projects.createProject(folder, BufferedImage.class)
for (int i = 1; i + 1 < args.length; i += 2) {
    def image = new File(args[i])
    def support = ImageServerProvider.getPreferredUriImageSupport(BufferedImage.class, image.toURI().toString())
    if (support == null || support.getBuilders().isEmpty())
        throw new IllegalArgumentException("QuPath cannot read ${image}")
    def entry = project.addImage(support.getBuilders().get(0))
    entry.setImageName(image.getName())
    def imageData = entry.readImageData()
    imageData.setImageType(ImageData.ImageType.BRIGHTFIELD_H_E)
    imageData.getHierarchy().addObjects(PathIO.readObjects(new File(args[i + 1])))
    entry.saveImageData(imageData)
}
project.syncChanges()
println "project ${folder}: ${project.getImageList().size()} images"
